"""The broker is not the gate (issue 12): RabbitMQ carries the Celery queues
(durable quorum queues, publisher confirms, late acknowledgements), the Redis
broker still serves a laptop, a worker outlives the gate Redis dying, and it
reconnects to a RabbitMQ that restarts mid-drain without losing or repeating
a delivery. Real processes throughout: gunicorn, Celery worker and beat,
redis-server and rabbitmq-server of their own where one is stopped."""

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import amqp
import pytest
from django.conf import settings
from kombu import Connection

from apps.cardkeys.models import CardKey
from apps.core.breakers import _breaker
from apps.orders.models import Order
from apps.orders.services import fulfilment, persistence
from apps.orders.tasks import MAIL_RETRY_MAX_SECONDS, fulfil_order_task, mail_retry_wait, send_order_keys_emails_task
from apps.orders.tests import processes  # not test_environment itself: pytest would collect a test_* name
from apps.orders.tests.processes import CeleryWorker, GunicornServer
from apps.orders.tests.support import checkout, paid_orders, product_with_keys
from apps.orders.tests.test_flash_sale import pay_all_concurrently
from cardshop.broker import broker_is_redis, broker_queues, broker_transport_options, broker_vhost
from cardshop.celery import app as celery_app
from testing.processes import (
    ChildProcess,
    PrivateRabbitMQ,
    free_port,
    port_listens,
    rabbitmq_vhost_ensure,
    rabbitmq_vhost_remove,
    url_answers,
    wait_until,
)
from testing.redis_server import RedisServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def http_json(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def buy_and_pay(base: str, sku: str, email: str, *, timeout: float = 60) -> Order:
    """Checkout over HTTP; beat persists the order; the sandbox pays it (its
    notification goes through the broker to the webhook); the worker delivers
    it. Returns the delivered order."""
    status, answer = http_json(f"{base}/api/v1/orders", {"sku": sku, "email": email, "quantity": 1})
    assert status == 202, answer
    order_no, token = answer["order_no"], answer["access_token"]
    wait_until(lambda: Order.objects.filter(order_no=order_no).exists(), timeout=30, message=f"{order_no} persisted")
    status, answer = http_json(f"{base}/api/v1/payments/sandbox/{order_no}/pay", {}, {"X-Order-Token": token})
    assert status == 202, answer
    wait_until(
        lambda: Order.objects.get(order_no=order_no).status == Order.Status.DELIVERED,
        timeout=timeout,
        message=f"{order_no} delivered",
    )
    return Order.objects.get(order_no=order_no)


def assert_each_key_once(product) -> None:
    sold = list(CardKey.objects.filter(product=product, status="sold").values_list("id", "order_id"))
    per_order = Counter(order_id for _, order_id in sold)
    for order in Order.objects.filter(product=product):
        expected = order.quantity if order.status == Order.Status.DELIVERED else 0
        assert per_order[order.id] == expected, f"{order.order_no} ({order.status}) has {per_order[order.id]} keys"


# --- settings


@pytest.mark.django_db(transaction=False)
def test_the_broker_url_decides_the_transport_settings():
    amqp_url = "amqp://guest:guest@127.0.0.1:5672/shop%2Fone"
    assert not broker_is_redis(amqp_url) and broker_vhost(amqp_url) == "shop/one"
    assert broker_vhost("amqp://guest:guest@127.0.0.1:5672//") == "/"
    # RabbitMQ: publisher confirms, nothing of Redis's.
    assert broker_transport_options(url=amqp_url, key_prefix="p", visibility_timeout=300) == {"confirm_publish": True}
    for queue in broker_queues(url=amqp_url, names=["gate", "mail"]):
        assert queue.durable and queue.queue_arguments == {"x-queue-type": "quorum"}
        # Native delayed delivery (countdowns on quorum queues) needs a topic exchange.
        assert queue.exchange.type == "topic" and queue.exchange.durable and queue.routing_key == queue.name
    # Redis: the key prefix and the visibility timeout, no queue arguments.
    redis_url = "redis://127.0.0.1:6379/1"
    assert broker_transport_options(url=redis_url, key_prefix="p", visibility_timeout=300) == {
        "global_keyprefix": "p:celery:",
        "visibility_timeout": 300,
    }
    assert all(not q.queue_arguments for q in broker_queues(url=redis_url, names=["gate"]))
    # The suite itself runs on RabbitMQ, in a virtual host named after its key prefix.
    assert not broker_is_redis(settings.CELERY_BROKER_URL)
    assert broker_vhost(settings.CELERY_BROKER_URL) == settings.REDIS_KEY_PREFIX
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert settings.CELERY_BROKER_CONNECTION_MAX_RETRIES is None


@pytest.mark.django_db(transaction=False)
def test_mail_retries_on_rabbitmq_are_capped_by_their_own_ceiling_not_a_visibility_timeout():
    assert "visibility_timeout" not in settings.CELERY_BROKER_TRANSPORT_OPTIONS
    waits = [mail_retry_wait(retries=n) for n in range(41)]
    assert waits[:5] == [5, 10, 20, 40, 80]
    assert max(waits) == MAIL_RETRY_MAX_SECONDS
    assert mail_retry_wait(retries=0, retry_after=900) == MAIL_RETRY_MAX_SECONDS


# --- countdowns on quorum queues: held at the broker, not in a worker


def test_countdowns_and_retries_wait_at_the_broker_and_run_once(monkeypatch):
    """A mail batch meets an open mail breaker: each mail is queued again alone
    with a countdown (apply_async), and a mail that meets it again retries
    with a longer one (self.retry, which carries the delayed routing key
    forward). On quorum queues RabbitMQ holds both until their time (native
    delayed delivery); each mail is then sent exactly once."""
    monkeypatch.setattr(send_order_keys_emails_task, "delay", lambda order_ids: None)
    product = product_with_keys(keys=3, per_buyer_limit=1)
    orders = paid_orders(product, 3)
    fulfilment.fulfilment_run(order_id=None)
    ids = [o.id for o in orders]
    assert Order.objects.filter(id__in=ids, status=Order.Status.DELIVERED, keys_emailed_at__isnull=True).count() == 3

    worker = CeleryWorker(concurrency=2, extra_env={"BREAKER_MAIL_RESET_TIMEOUT": "3"}).start()
    try:
        breaker = _breaker("mail")
        breaker.open()
        send_order_keys_emails_task.apply_async((ids,))
        # Held open until a lone mail has met it again and asked for its retry.
        deadline = time.monotonic() + 40
        while "retry: Retry in" not in worker.log() and time.monotonic() < deadline:
            breaker.open()
            time.sleep(0.2)
        assert "retry: Retry in" in worker.log(), worker.log_tail()
        reopened_at = time.monotonic()
        assert Order.objects.filter(id__in=ids, keys_emailed_at__isnull=False).count() == 0
        wait_until(
            lambda: Order.objects.filter(id__in=ids, keys_emailed_at__isnull=False).count() == 3,
            timeout=60,
            message="every mail sent after its countdown",
        )
        # The retry's countdown (10 s) was waited out at the broker, not skipped.
        assert time.monotonic() - reopened_at >= 5
        assert worker.alive()
        log = worker.log()
        assert "Unrecoverable error" not in log
        # Nothing held a message in the worker until its time came.
        assert "this task may block the worker" not in log and "direct exchange" not in log
    finally:
        worker.stop()
    # Sent once each: the locmem outbox lives in the worker, so count the task's successes.
    sent = [line for line in log.splitlines() if "send_order_keys_email_task" in line and "succeeded" in line]
    assert len(sent) == 3, sent


# --- the Redis broker of a laptop


def test_the_redis_broker_still_delivers_an_order_end_to_end():
    """CELERY_BROKER_URL=redis://...: checkout, persistence by beat, the
    sandbox's payment notification and the fulfilment all go through a Redis
    broker, with no RabbitMQ involved."""
    product = product_with_keys(keys=2, per_buyer_limit=1)
    env = {"TEST_CELERY_BROKER_URL": settings.REDIS_URL}
    web = GunicornServer(workers=1, threads=4, extra_env=env)
    worker = CeleryWorker(concurrency=2, beat=True, extra_env={**env, "SITE_URL": web.url})
    try:
        web.start()
        worker.start()
        assert "redis://" in worker.log() and "amqp://" not in worker.log()
        order = buy_and_pay(web.url, product.sku, "laptop@example.com")
    finally:
        worker.stop()
        web.stop()
    assert order.status == Order.Status.DELIVERED
    assert_each_key_once(product)


# --- the gate Redis dies under load; the worker lives on


def test_the_worker_survives_the_gate_redis_dying_and_checkout_reopens_by_itself():
    """A private Redis (no persistence) is SIGKILLed while a crowd checks out,
    and started again empty. The worker (with beat) on RabbitMQ keeps running:
    beat's warm-up rebuilds the gate, checkout reopens with no one running
    warm_stock, and a new order is paid and delivered."""
    redis_server = RedisServer().start()
    product = product_with_keys(keys=200, per_buyer_limit=1, warm=False)
    env = {"REDIS_URL": redis_server.url, "GATE_REDIS_URL": redis_server.url}
    web = GunicornServer(workers=1, threads=8, extra_env=env)
    worker = CeleryWorker(concurrency=2, beat=True, extra_env={**env, "SITE_URL": web.url})
    answers: list[int] = []
    stop = threading.Event()

    def crowd(n: int):
        i = 0
        while not stop.is_set():
            status, _ = http_json(
                f"{web.url}/api/v1/orders", {"sku": product.sku, "email": f"c{n}-{i}@x.com", "quantity": 1}
            )
            answers.append(status)
            i += 1
            time.sleep(0.02)

    try:
        web.start()
        worker.start()
        # Beat warms the sale by itself: checkout opens.
        wait_until(lambda: redis_server.client().keys("*:stock"), timeout=30, message="beat's first warm-up")
        threads = [threading.Thread(target=crowd, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        wait_until(lambda: answers.count(202) >= 20, timeout=30, message="checkouts accepted")
        redis_server.kill()
        time.sleep(2)  # beat's jobs and the crowd meet a dead Redis
        redis_server.start()  # empty: stock is unknown until the warm-up
        outage_over = time.monotonic()
        accepted_before = answers.count(202)
        wait_until(lambda: answers.count(202) > accepted_before, timeout=45, message="checkout reopened")
        reopened_after = time.monotonic() - outage_over
        stop.set()
        for thread in threads:
            thread.join(timeout=15)

        assert worker.alive(), worker.log_tail()
        assert "Unrecoverable error" not in worker.log()
        # Still consuming: a new order goes through persistence, payment and fulfilment.
        order = buy_and_pay(web.url, product.sku, "after-the-outage@example.com")
        assert order.status == Order.Status.DELIVERED
        assert worker.alive()
    finally:
        stop.set()
        worker.stop()
        web.stop()
        redis_server.remove()
    assert reopened_after < 45
    assert set(answers) <= {202, 409, 503}, Counter(answers)
    assert Order.objects.filter(product=product).count() <= 200
    assert_each_key_once(product)


# --- RabbitMQ restarts while the worker drains paid orders


@pytest.fixture
def private_rabbitmq():
    server = PrivateRabbitMQ().start()
    yield server
    server.remove()
    # Nothing of it stays behind: not its data, not the epmd it started as a daemon.
    assert not server.dir.exists() and not port_listens(server.epmd_port)


def test_rabbitmq_restarted_mid_drain_every_paid_order_delivered_exactly_once(private_rabbitmq, monkeypatch):
    """The worker drains 300 paid orders one per transaction when its broker
    (a private RabbitMQ) restarts. The fulfilment task, unacknowledged, waits
    in its durable quorum queue; the worker reconnects and takes it again.
    Every order is delivered, each key to one order."""
    # Payments here publish nothing to the suite's broker: the task goes to the private one below.
    monkeypatch.setattr(fulfil_order_task, "delay", lambda order_id=None: None)
    product = product_with_keys(keys=300, per_buyer_limit=1)
    for i in range(300):
        checkout(product, email=f"r{i}@x.com")
    persistence.order_persist_queued()
    pay_all_concurrently(list(Order.objects.filter(product=product).values_list("order_no", flat=True)))
    assert Order.objects.filter(product=product, status=Order.Status.PAID).count() == 300

    env = {"TEST_CELERY_BROKER_URL": private_rabbitmq.url, "FULFIL_BATCH_SIZE": "1"}
    worker = CeleryWorker(concurrency=1, extra_env=env).start()
    try:
        with Connection(private_rabbitmq.url) as connection:
            fulfil_order_task.apply_async(connection=connection)
        wait_until(
            lambda: Order.objects.filter(product=product, status="delivered").count() >= 10,
            timeout=30,
            interval=0.05,
            message="the first deliveries",
        )
        private_rabbitmq.restart()
        assert Order.objects.filter(product=product, status="delivered").count() < 300, "drained before the restart"
        wait_until(
            lambda: Order.objects.filter(product=product, status="delivered").count() == 300,
            timeout=90,
            message="every paid order delivered after the broker's restart",
        )
        assert worker.alive(), worker.log_tail()
        log = worker.log()
        assert "Unrecoverable error" not in log
        # It lost the broker and reconnected (the same process, not a new one).
        assert (
            "Connection to broker lost" in log
            and log.count(f"Connected to amqp://guest:**@127.0.0.1:{private_rabbitmq.port}//") >= 2
        )
    finally:
        worker.stop()
    assert not Order.objects.filter(product=product).exclude(status="delivered").exists()
    assert_each_key_once(product)
    assert CardKey.objects.filter(product=product, status="available").count() == 0


# --- make run: a worker that exits is started again


def celery_worker_masters(node: str) -> set[int]:
    """Pids of the Celery worker processes started with --hostname `node`
    whose parent is not one of them (the pool's children are)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = (Path("/proc") / entry / "cmdline").read_bytes().split(b"\0")
            parent = int((Path("/proc") / entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"worker" in cmdline and any(node.encode() in part for part in cmdline):
            found[int(entry)] = parent
    return {pid for pid, parent in found.items() if parent not in found}


def test_make_run_starts_a_worker_again_when_it_dies():
    """scripts/run_all.sh (make run) supervises the worker: SIGKILLed, it is
    started again after a short pause, and the shop keeps serving."""
    port = free_port()
    env = processes.test_environment(
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_WORKERS="1",
        RESTART_MAX_SECONDS="2",
        WORKER_METRICS_PORT=str(free_port()),
        SITE_URL=f"http://127.0.0.1:{port}",
    )
    node = f"cardshop-{port}@"
    run = ChildProcess("run-all", ["scripts/run_all.sh"], env=env).start()
    try:
        run.wait_for_log("cardshop is running", timeout=120)
        (first,) = celery_worker_masters(node)
        os.kill(first, signal.SIGKILL)
        run.wait_for_log("The Celery worker stopped (exit", timeout=30)
        run.wait_until(lambda: celery_worker_masters(node) - {first}, timeout=60, what="a new worker process")
        (second,) = celery_worker_masters(node)
        run.wait_until(
            lambda: bool(celery_app.control.ping(destination=[f"{node}{socket.gethostname()}"], timeout=1)),
            timeout=60,
            what="the new worker answering a ping",
        )
        assert run.alive() and url_answers(f"http://127.0.0.1:{port}/healthz")
    finally:
        run.stop(timeout=30)
    assert second != first


def test_a_runs_virtual_host_is_removed_with_it():
    """A run removes its virtual host: each holds some 33 quorum queues with
    files open, and a node left with many stops taking connections."""
    url = f"amqp://guest:guest@127.0.0.1:5672/cardshop-vhost-{uuid.uuid4().hex[:8]}"
    rabbitmq_vhost_ensure(url)
    with Connection(url, connect_timeout=5) as connection:
        connection.connect()
    assert rabbitmq_vhost_remove(url)
    with pytest.raises(amqp.exceptions.NotAllowed), Connection(url, connect_timeout=5) as connection:
        connection.connect()
    assert not rabbitmq_vhost_remove("amqp://guest:guest@127.0.0.1:5672//")  # never the default one
