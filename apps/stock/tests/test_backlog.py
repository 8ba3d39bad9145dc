"""Overload protection (issue 4): a deep fulfilment or persistence backlog
pauses checkout store-wide through the `overloaded` rule field, with
hysteresis, and the storefront says so. Real broker queue (RabbitMQ, and the
Redis broker of a laptop), real script."""

import pytest
from django.conf import settings
from django.test import Client
from kombu import Connection, Queue

from apps.orders.models import Order
from apps.orders.services.persistence import order_persist_queued
from apps.orders.tests.delivery_support import product_manual
from apps.orders.tests.support import product_with_keys
from apps.stock import overload
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import overloaded_key, persist_queue_key, rules_key
from apps.stock.tasks import overload_check_task
from cardshop.broker import broker_is_redis, broker_transport_options
from cardshop.celery import app as celery_app
from celery_worker.schedule import BEAT_SCHEDULE

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings):
    settings.FULFIL_BACKLOG_LIMIT = 20
    settings.PERSIST_BACKLOG_LIMIT = 6
    settings.BACKLOG_RESUME_RATIO = 0.5
    return settings


@pytest.fixture
def fresh_notice(monkeypatch):
    """Pages read the flag at once (not a copy up to 2 s old), and later tests start afresh."""
    monkeypatch.setattr(overload, "NOTICE_CACHE_SECONDS", 0)
    yield
    overload._notice.update(at=float("-inf"), value=False)


def enqueue_dummy_tasks(count: int) -> None:
    """Real messages in the suite's broker queue, as .delay() would publish them
    (no worker runs here, so they wait like a backlog)."""
    for n in range(count):
        celery_app.send_task("cardshop.tests.backlog_dummy", args=[n], queue=settings.CELERY_QUEUE_MAIL)


def drain(count: int) -> None:
    """Take `count` messages off the queue, as workers would."""
    with celery_app.connection_for_read() as connection:
        for _ in range(count):
            assert connection.default_channel.basic_get(settings.CELERY_QUEUE_MAIL, no_ack=True) is not None


def checkout(client: Client, sku: str, email: str):
    return client.post("/api/v1/orders", {"sku": sku, "email": email, "quantity": 1}, content_type="application/json")


def rules_flag(product) -> bytes | None:
    return stock_redis().hget(rules_key(product.id), "overloaded")


def test_the_mail_queue_is_measured_on_rabbitmq(limits):
    assert not broker_is_redis(settings.CELERY_BROKER_URL), "the suite's broker is RabbitMQ"
    assert overload.backlog_measure().fulfil == 0
    enqueue_dummy_tasks(7)
    assert overload.broker_queue_depth("mail") == 7
    assert overload.backlog_measure().fulfil == 7
    drain(3)
    assert overload.backlog_measure().fulfil == 4


def test_the_mail_queue_is_measured_where_the_redis_broker_keeps_it(limits):
    """A laptop's Redis broker: kombu's lists, under the transport's global_keyprefix."""
    url = settings.REDIS_URL
    limits.CELERY_BROKER_URL = url
    limits.CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(
        url=url, key_prefix=settings.REDIS_KEY_PREFIX, visibility_timeout=300
    )
    overload._broker_redis.cache_clear()
    try:
        with Connection(url, transport_options=limits.CELERY_BROKER_TRANSPORT_OPTIONS) as connection:
            producer = connection.Producer(serializer="json")
            for n in range(7):
                producer.publish({"n": n}, routing_key="mail", declare=[Queue("mail")])
        key = overload.celery_queue_keys("mail")[0]
        assert key == limits.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] + "mail"
        assert overload._broker_redis().llen(key) == 7
        assert overload.backlog_measure().fulfil == 7
    finally:
        overload._broker_redis.cache_clear()


def test_paid_orders_waiting_for_keys_count_whatever_the_fulfilment_queue_holds(limits):
    """Fulfilment tasks coalesce (one task serves many payments), so the
    backlog is the paid orders themselves, read from the database."""
    product = product_with_keys(keys=10, per_buyer_limit=10)
    for n in range(5):
        assert checkout(Client(), product.sku, f"p{n}@x.com").status_code == 202
    order_persist_queued()
    assert Order.objects.count() == 5
    Order.objects.filter(id__in=list(Order.objects.order_by("id").values_list("id", flat=True)[:3])).update(
        status=Order.Status.PAID
    )
    assert overload.backlog_measure().fulfil == 3
    enqueue_dummy_tasks(2)
    assert overload.backlog_measure().fulfil == 5


def test_paid_orders_alone_pause_checkout(limits):
    limits.FULFIL_BACKLOG_LIMIT = 3
    product = product_with_keys(keys=10, per_buyer_limit=10)
    for n in range(4):
        assert checkout(Client(), product.sku, f"q{n}@x.com").status_code == 202
    order_persist_queued()
    assert overload.overload_check() is False
    Order.objects.update(status=Order.Status.PAID)
    assert overload.overload_check() is True
    assert checkout(Client(), product.sku, "late@x.com").json()["error"] == "sale_paused"


def test_fulfilment_backlog_pauses_checkout_until_it_drains_below_the_lower_mark(limits, fresh_notice):
    product = product_with_keys(keys=10, per_buyer_limit=10)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    assert checkout(client, product.sku, "a@x.com").status_code == 202
    assert overload_check_task() is False
    assert rules_flag(product) == b"0"

    enqueue_dummy_tasks(20)
    assert overload_check_task() is True
    assert rules_flag(product) == b"1" and stock_redis().get(overloaded_key()) == b"1"
    refused = checkout(client, product.sku, "b@x.com")
    assert refused.status_code == 503
    assert refused.json()["error"] == "sale_paused" and "few seconds" in refused.json()["detail"]
    assert int(refused["Retry-After"]) >= 1
    page = client.get(f"/p/{product.sku}")
    assert "checkout is paused for a few seconds" in page.content.decode()

    drain(8)  # 12 left: under the limit, still over half of it
    assert overload_check_task() is True
    assert checkout(client, product.sku, "c@x.com").status_code == 503

    drain(3)  # 9 left: under the lower mark
    assert overload_check_task() is False
    assert rules_flag(product) == b"0"
    assert checkout(client, product.sku, "d@x.com").status_code == 202
    assert "checkout is paused" not in client.get(f"/p/{product.sku}").content.decode()


def test_persistence_backlog_of_all_products_together_pauses_checkout(limits):
    first, second = product_with_keys(keys=10), product_with_keys(keys=10)
    client = Client()
    for n in range(3):  # 3 + 3 queued: each product under the per-product limit of 6, together at it
        assert checkout(client, first.sku, f"f{n}@x.com").status_code == 202
        assert checkout(client, second.sku, f"s{n}@x.com").status_code == 202
    assert overload.backlog_measure().persist == 6
    assert overload.overload_check() is True
    assert checkout(client, first.sku, "late@x.com").json()["error"] == "sale_paused"

    stock_redis().ltrim(persist_queue_key(first.id), 3, -1)  # the first product's queue persisted
    assert overload.overload_check() is True  # 3 left: not under half the limit yet
    stock_redis().ltrim(persist_queue_key(second.id), 1, -1)
    assert overload.overload_check() is False
    assert checkout(client, first.sku, "late@x.com").status_code == 202


def test_a_product_warmed_while_overloaded_gets_the_flag_at_the_next_check(limits):
    enqueue_dummy_tasks(20)
    assert overload.overload_check() is True
    product = product_with_keys(keys=5)
    assert rules_flag(product) is None
    assert overload.overload_check() is True
    assert rules_flag(product) == b"1"
    assert checkout(Client(), product.sku, "x@x.com").status_code == 503


def test_a_zero_limit_turns_the_check_off(limits):
    limits.FULFIL_BACKLOG_LIMIT = 0
    enqueue_dummy_tasks(30)
    assert overload.overload_check() is False


def test_beat_runs_the_check_every_few_seconds():
    entry = BEAT_SCHEDULE["overload-check"]
    assert entry["task"] == overload_check_task.name
    assert entry["schedule"].run_every.total_seconds() <= 2


def test_manual_orders_waiting_for_the_merchant_are_no_fulfilment_backlog(limits):
    """Paid orders of a manual-delivery product wait for a person, not a
    worker: however many there are, they never pause checkout shop-wide."""
    limits.FULFIL_BACKLOG_LIMIT = 3
    manual = product_manual(stock=10, per_buyer_limit=10)
    pool = product_with_keys(keys=10, per_buyer_limit=10)
    for n in range(4):
        assert checkout(Client(), manual.sku, f"m{n}@x.com").status_code == 202
    assert checkout(Client(), pool.sku, "k0@x.com").status_code == 202
    order_persist_queued()
    Order.objects.update(status=Order.Status.PAID)
    assert overload.backlog_measure().fulfil == 1  # the pool order alone
    assert overload.overload_check() is False
    assert checkout(Client(), pool.sku, "k1@x.com").status_code == 202
