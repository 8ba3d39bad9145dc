import dataclasses
import io
import time
from unittest import mock

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.services import checkout, payment, persistence
from apps.orders.services.reconcile import reconcile_run
from apps.orders.tests.support import add_keys, product_with_keys
from apps.stock import reconcile
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import persist_queue_key, reservations_key, stock_key
from apps.stock.reservations import Reservation
from apps.stock.warmup import stock_warm

pytestmark = pytest.mark.django_db(transaction=True)


def run(*command):
    out = io.StringIO()
    call_command(*command, "--lang", "en", stdout=out)
    return out.getvalue()


def test_warm_stock_command_sets_available_minus_outstanding():
    product = product_with_keys(keys=10, warm=False)
    out = run("warm_stock", "--sku", product.sku)
    assert f"{product.sku}: warmed, stock 10" in out
    checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=3)
    persistence.order_persist_queued()
    stock_redis().delete(stock_key(product.id))
    out = run("warm_stock")
    assert f"{product.sku}: warmed, stock 7" in out
    assert f"{product.sku}: already warm, stock 7" in run("warm_stock")


def test_warm_stock_rebuild_repairs_a_buyer_count_left_wrong():
    """A buyer's share left counted (a refund whose Redis call failed) is
    repaired by an operator's rebuild from the database."""
    from apps.orders.identity import buyer_identity
    from apps.stock.redis_keys import buyers_key

    product = product_with_keys(keys=10, per_buyer_limit=1)
    checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    persistence.order_persist_queued()
    stale = "e:" + buyer_identity(email="gone@x.com")
    stock_redis().hset(buyers_key(product.id), stale, 1)  # a refunded buyer still counted
    assert f"{product.sku}: already warm, stock 9" in run("warm_stock", "--sku", product.sku)
    assert stock_redis().hget(buyers_key(product.id), stale) == b"1"
    assert f"{product.sku}: warmed, stock 9" in run("warm_stock", "--sku", product.sku, "--rebuild")
    assert stock_redis().hget(buyers_key(product.id), stale) is None
    assert stock_redis().hget(buyers_key(product.id), "e:" + buyer_identity(email="a@x.com")) == b"1"
    checkout.order_checkout(sku=product.sku, email="gone@x.com", quantity=1)


def test_warm_stock_unknown_sku_fails():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        run("warm_stock", "--sku", "NOPE")


def test_reconcile_repairs_drift_both_ways_and_says_so():
    product = product_with_keys(keys=10)
    add_keys(product=product, count=5, prefix="late")  # uploaded without touching the gate
    report = reconcile_run(drift_settle_seconds=0)
    assert report.drift_fixed == {product.sku: 5}
    assert int(stock_redis().get(stock_key(product.id))) == 15
    first = CardKey.objects.filter(product=product).order_by("id").first()
    CardKey.objects.filter(id=first.id).update(status="void")
    out = run("reconcile")
    assert f"stock drift fixed: {product.sku} -1" in out
    assert int(stock_redis().get(stock_key(product.id))) == 14
    assert "stock drift fixed: none" in run("reconcile")


def test_reconcile_redrives_paid_undelivered_and_rebuilds_lost_gates(monkeypatch, settings):
    settings.FULFIL_REDRIVE_AFTER_SECONDS = 0
    sent = []
    monkeypatch.setattr("apps.orders.tasks.fulfil_order_task.delay", lambda order_id: sent.append(order_id))
    product = product_with_keys(keys=3)
    result = checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=result.order_no)
    payment.order_mark_paid(
        order_no=order.order_no, provider="sandbox", event_id="e", amount=order.amount, currency="CNY"
    )
    sent.clear()  # the payment's own enqueue "was lost"
    Order.objects.filter(id=order.id).update(paid_at=timezone.now() - timezone.timedelta(minutes=5))
    stock_redis().delete(stock_key(product.id))
    report = reconcile_run(drift_settle_seconds=0)
    assert sent == [order.id] and report.redriven == [order.order_no]
    assert report.rewarmed == [product.sku]
    assert int(stock_redis().get(stock_key(product.id))) == 2  # the paid order still holds its key


def test_reconcile_returns_stock_of_orders_that_ended_while_redis_was_away():
    product = product_with_keys(keys=2)
    result = checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    persistence.order_persist_queued()
    # Expired in MariaDB, but the release never reached Redis.
    Order.objects.filter(order_no=result.order_no).update(status="expired")
    assert stock_redis().hexists(reservations_key(product.id), result.order_no)
    report = reconcile_run(drift_settle_seconds=0)
    assert report.released == [result.order_no]
    assert int(stock_redis().get(stock_key(product.id))) == 2
    assert report.drift_fixed == {}


def test_a_bad_record_does_not_block_the_queue_and_its_stock_returns_later(caplog):
    product = product_with_keys(keys=5)
    checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    bad = checkout.order_checkout(sku=product.sku, email="b@x.com", quantity=1)
    checkout.order_checkout(sku=product.sku, email="c@x.com", quantity=1)
    client = stock_redis()
    queue = persist_queue_key(product.id)
    reservations = [Reservation.from_json(r) for r in client.lrange(queue, 0, -1)]
    # The database will refuse it.
    reservations[1] = dataclasses.replace(reservations[1], currency="TOO-LONG-FOR-THE-COLUMN")
    client.delete(queue)
    client.rpush(queue, *[r.to_json() for r in reservations])

    assert persistence.order_persist_queued() == 3
    assert Order.objects.filter(product=product).count() == 2
    assert not Order.objects.filter(order_no=bad.order_no).exists()
    assert "could not be persisted" in caplog.text
    assert int(client.get(stock_key(product.id))) == 2  # the bad one still holds its key
    # Long after its reservation lapsed, reconciliation gives its key back.
    with mock.patch.object(reconcile.time, "time", return_value=time.time() + 3600):
        report = reconcile_run(drift_settle_seconds=0)
    assert bad.order_no in report.released
    assert int(client.get(stock_key(product.id))) == 3


def test_a_redis_restart_that_kept_stale_data_rebuilds_the_gate(monkeypatch):
    """Redis came back from a restart (AOF that missed its last second, or a
    lagging replica promoted) with a stock counter from before a sale's last
    checkouts: the counter exists but is too high. The changed server run id
    makes reconciliation distrust it and rebuild from MariaDB."""
    from apps.stock import selectors as gate

    product = product_with_keys(keys=5)
    reconcile_run(drift_settle_seconds=0)  # records the server's run id
    checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=2)
    persistence.order_persist_queued()
    # What the restart looks like: an old counter and no reservation.
    client = stock_redis()
    client.set(stock_key(product.id), 5)
    client.delete(reservations_key(product.id))
    assert reconcile_run(drift_settle_seconds=0).drift_fixed == {}  # invisible as drift
    real_info = client.info
    monkeypatch.setattr(
        type(client), "info", lambda self, section=None, *a, **k: {**real_info(section), "run_id": "restarted"}
    )
    report = reconcile_run(drift_settle_seconds=0)
    assert report.rewarmed_after_restart == 1 and report.rewarmed == [product.sku]
    assert int(client.get(stock_key(product.id))) == 3
    assert gate.stock_reservation_get(product_id=product.id, order_no=Order.objects.get().order_no)


def test_a_refund_request_lost_with_its_task_is_asked_again(monkeypatch, settings):
    settings.FULFIL_REDRIVE_AFTER_SECONDS = 0
    asked = []
    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: asked.append(order_id))
    product = product_with_keys(keys=1)
    result = checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    persistence.order_persist_queued()
    Order.objects.filter(order_no=result.order_no).update(
        status="refund_pending", updated_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    report = reconcile_run(drift_settle_seconds=0)
    assert report.refunds_redriven == [result.order_no] and asked == [Order.objects.get().id]


def test_a_rebuild_reads_the_orders_in_a_fixed_number_of_queries(django_assert_max_num_queries):
    from apps.orders.tests.support import redis_lose_product

    product = product_with_keys(keys=30, per_buyer_limit=1)
    for n in range(20):
        checkout.order_checkout(sku=product.sku, email=f"q{n}@x.com", quantity=1)
    persistence.order_persist_queued()
    Order.objects.filter(product=product).update(status=Order.Status.DELIVERED)
    redis_lose_product(product)
    with django_assert_max_num_queries(12):
        assert stock_warm(product=product) == (True, 30)


def test_an_unreadable_reservation_entry_does_not_stop_the_repairs(caplog):
    product = product_with_keys(keys=5)
    stock_redis().hset(reservations_key(product.id), "junk", b"not a reservation")
    stock_redis().decrby(stock_key(product.id), 1)  # drift to repair

    report = reconcile_run(drift_settle_seconds=0)

    assert report.errors == [] and report.drift_fixed == {product.sku: 1}
    assert "unreadable" in caplog.text
