"""The continuous persister (issue 12): a reservation answered 202 becomes an
order row within milliseconds, without waiting for beat's once-a-second drain,
and a crowd publishes a persist task per burst, not one per order."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from apps.core.db_locks import persist_fence
from apps.orders import tasks
from apps.orders.models import Order
from apps.orders.services import persistence
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import persist_requested_key
from apps.stock.selectors import stock_queue_length
from testing.processes import wait_until

from .support import checkout, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def publishes(monkeypatch):
    """Persist tasks the checkouts publish (recorded, not sent)."""
    sent = []
    monkeypatch.setattr(tasks.persist_reservations_task, "delay", lambda *args: sent.append(args))
    return sent


def test_a_burst_publishes_one_persist_task_and_the_task_drains_it_all(publishes):
    product = product_with_keys(keys=60, per_buyer_limit=1)

    def buy(n):
        try:
            return checkout(product, email=f"burst{n}@x.com").order_no
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=16) as pool:
        order_nos = list(pool.map(buy, range(50)))
    assert publishes == [(product.id,)]  # the first of the burst; the other 49 rode on it
    assert stock_queue_length(product_id=product.id) == 50

    assert persistence.order_persist_requested(product_id=product.id) == 50  # the task's work
    assert set(Order.objects.filter(product=product).values_list("order_no", flat=True)) == set(order_nos)
    # It cleared the mark as it started: the next checkout asks for a new task.
    assert not stock_redis().exists(persist_requested_key(product.id))
    checkout(product, email="later@x.com")
    assert publishes == [(product.id,), (product.id,)]


def test_a_failed_publish_waits_for_the_mark_to_expire(monkeypatch, settings):
    """While the broker is down, one checkout per mark's life tries to publish
    (and waits for it to fail), not every checkout."""
    settings.PERSIST_REQUEST_TTL_SECONDS = 0.3
    product = product_with_keys(keys=5, per_buyer_limit=1)
    attempts = []

    def broker_down(*args):
        attempts.append(args)
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.persist_reservations_task, "delay", broker_down)
    checkout(product, email="a@x.com")  # still answered: its reservation waits in Redis
    checkout(product, email="b@x.com")
    assert len(attempts) == 1
    wait_until(lambda: not stock_redis().exists(persist_requested_key(product.id)), timeout=5, interval=0.05)
    checkout(product, email="c@x.com")
    assert len(attempts) == 2
    assert stock_queue_length(product_id=product.id) == 3


def other_worker_persists(product_id: int) -> int:
    try:
        return persistence.order_persist_requested(product_id=product_id)
    finally:
        connection.close()


def test_a_held_fence_is_no_loss_the_holder_looks_again(publishes, settings):
    """A persist task that finds another worker draining leaves (after its
    short wait); the drainer looks at the queue again after letting go of the
    fence, so a reservation queued during its drain is not left for beat."""
    settings.PERSIST_FENCE_WAIT_SECONDS = 0.2
    product = product_with_keys(keys=5, per_buyer_limit=1)
    checkout(product, email="a@x.com")
    original = persistence.order_persist_queue_drain
    late = []

    def drain_then_a_late_checkout(*, product_id):
        count = original(product_id=product_id)
        if not late:  # arrives after the drainer's last look, while it still holds the fence
            late.append(checkout(product, email="late@x.com").order_no)
            # Its own persist task runs now (another worker: another database
            # session, as named locks are per session), finds the fence held, and leaves.
            with ThreadPoolExecutor(max_workers=1) as other_worker:
                assert other_worker.submit(other_worker_persists, product_id).result() == 0
        return count

    persistence.order_persist_queue_drain = drain_then_a_late_checkout
    try:
        assert persistence.order_persist_requested(product_id=product.id) == 2
    finally:
        persistence.order_persist_queue_drain = original
    assert Order.objects.filter(product=product).count() == 2


def test_orders_reach_mariadb_without_beat(celery_worker_process):
    """A real worker and no beat: only the published persist tasks persist."""
    product = product_with_keys(keys=40, per_buyer_limit=1)
    answered = []
    for n in range(30):
        answered.append(checkout(product, email=f"w{n}@x.com").order_no)
        time.sleep(0.01)

    def recorded():
        return set(Order.objects.filter(order_no__in=list(answered)).values_list("order_no", flat=True))

    wait_until(lambda: recorded() == set(answered), timeout=15, message="every reservation persisted without beat")
    # Entries leave the queue just after their rows commit.
    wait_until(lambda: stock_queue_length(product_id=product.id) == 0, timeout=5, message="the queue emptied")


def test_a_task_that_finds_a_rebuild_holding_the_fence_waits_for_it(publishes, settings):
    """A stock rebuild (warm-up) holds the same fence but does not look at the
    queue afterwards: a persist task arriving meanwhile waits for the fence
    instead of leaving the burst to beat."""
    settings.PERSIST_FENCE_WAIT_SECONDS = 5
    product = product_with_keys(keys=5, per_buyer_limit=1)
    order_no = checkout(product, email="a@x.com").order_no
    fence_held = threading.Event()

    def rebuild_holding_the_fence():
        try:
            with persist_fence(product_id=product.id, timeout=1) as held:
                assert held
                fence_held.set()
                time.sleep(0.5)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as warm_up:
        rebuild = warm_up.submit(rebuild_holding_the_fence)
        assert fence_held.wait(5)
        assert persistence.order_persist_requested(product_id=product.id) == 1
        rebuild.result()
    assert Order.objects.filter(order_no=order_no).exists()
