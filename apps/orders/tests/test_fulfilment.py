"""Fulfilment: paid orders get their own keys in batches; requests coalesce; failures stay visible."""

import threading

import pytest
import redis
from django.db import connection, transaction

from apps.cardkeys import claims
from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.services import fulfilment, persistence
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import fulfilment_requested_key

from .support import checkout, order_row_held_briefly, paid_orders, pay, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def test_shortage_goes_to_needs_attention_not_partial(celery_eager):
    product = product_with_keys(keys=2)
    result = checkout(product, quantity=2)
    persistence.order_persist_queued()
    first = CardKey.objects.filter(product=product).order_by("id").first()
    CardKey.objects.filter(id=first.id).update(status="void")  # drift: a key vanished
    pay(result.order_no)
    order = Order.objects.get(order_no=result.order_no)
    assert order.status == Order.Status.NEEDS_ATTENTION
    assert "ran short" in order.attention_reason
    assert CardKey.objects.filter(status="sold").count() == 0


def test_one_fulfilment_transaction_serves_a_deep_queue_with_a_fixed_number_of_statements(
    monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr("apps.orders.tasks.fulfil_order_task.delay", lambda order_id: None)
    monkeypatch.setattr("apps.orders.tasks.send_order_keys_emails_task.delay", lambda order_ids: None)

    def paid_orders(product, count):
        for i in range(count):
            checkout(product, email=f"deep{product.id}-{i}@x.com", quantity=2)
        persistence.order_persist_queued()
        for order in Order.objects.filter(product=product):
            pay(order.order_no, event_id=f"e-{order.order_no}")
        return list(Order.objects.filter(product=product).order_by("id"))

    small = paid_orders(product_with_keys(keys=4, per_buyer_limit=2), 2)
    deep = paid_orders(product_with_keys(keys=40, per_buyer_limit=2), 20)
    with django_assert_max_num_queries(12):
        report = fulfilment.order_fulfil(order_id=deep[0].id, batch_size=50)
    # The batch also picked up the other product's paid orders.
    assert len(report.delivered) == 22 and report.short == []
    for order in small + deep:
        keys = CardKey.objects.filter(order=order)
        assert keys.count() == 2 and {k.product_id for k in keys} == {order.product_id}
    assert CardKey.objects.filter(status="sold").count() == 44
    assert Order.objects.filter(status="delivered").count() == 22


def test_fulfilment_waits_for_its_order_held_by_a_duplicate_notification(monkeypatch):
    """A duplicate payment notification locks the order row while it is turned
    away; the fulfilment task running at that moment must wait for the lock,
    not skip the order and leave it paid and undelivered."""
    monkeypatch.setattr("apps.orders.tasks.fulfil_order_task.delay", lambda order_id: None)
    monkeypatch.setattr("apps.orders.tasks.send_order_keys_emails_task.delay", lambda order_ids: None)
    product = product_with_keys(keys=1)
    result = checkout(product)
    persistence.order_persist_queued()
    pay(result.order_no, event_id="first")
    order = Order.objects.get(order_no=result.order_no)
    with order_row_held_briefly(order.id):
        report = fulfilment.order_fulfil(order_id=order.id)
    assert report.delivered == [order.order_no]
    assert Order.objects.get(id=order.id).status == Order.Status.DELIVERED


# --- Coalesced fulfilment requests


def test_payments_while_a_fulfilment_task_waits_publish_no_other_and_it_serves_them_all(published):
    product = product_with_keys(keys=30, per_buyer_limit=1)
    orders = paid_orders(product, 30)
    assert published == [orders[0].id]  # one task for thirty payments

    report = fulfilment.fulfilment_run(order_id=published[0])
    assert sorted(report.delivered) == sorted(o.order_no for o in orders)
    assert Order.objects.filter(status=Order.Status.DELIVERED).count() == 30
    assert CardKey.objects.filter(status="sold").values("order").distinct().count() == 30

    # The task cleared its mark as it started: the next payment publishes anew.
    late = paid_orders(product_with_keys(keys=1), 1)
    assert published == [orders[0].id, late[0].id]


def test_full_batches_ask_for_a_second_worker_and_the_asks_coalesce(published, settings):
    settings.FULFIL_BATCH_SIZE = 5
    orders = paid_orders(product_with_keys(keys=22, per_buyer_limit=1), 22)
    published.clear()
    report = fulfilment.fulfilment_run(order_id=orders[0].id)
    # Four full batches asked for help; the mark let only the first ask through.
    assert len(published) == 1
    assert len(report.delivered) == 22
    assert Order.objects.filter(status=Order.Status.DELIVERED).count() == 22


def test_a_lost_fulfilment_task_holds_back_later_payments_only_until_its_mark_expires(published, settings):
    settings.FULFIL_REQUEST_TTL_SECONDS = 7
    product = product_with_keys(keys=3, per_buyer_limit=1)
    first = paid_orders(product, 1)[0]
    assert published == [first.id]  # ... and that task is lost with its worker
    assert 0 < stock_redis().ttl(fulfilment_requested_key()) <= 7
    checkout(product, email="second@x.com")
    persistence.order_persist_queued()
    second = Order.objects.get(buyer_email="second@x.com")
    pay(second.order_no, event_id="e-second")
    assert published == [first.id]
    stock_redis().delete(fulfilment_requested_key())  # the mark expires
    checkout(product, email="third@x.com")
    persistence.order_persist_queued()
    third = Order.objects.get(buyer_email="third@x.com")
    pay(third.order_no, event_id="e-third")
    assert published == [first.id, third.id]
    # The new task serves the orders the lost one was standing for.
    fulfilment.fulfilment_run(order_id=third.id)
    assert set(Order.objects.values_list("status", flat=True)) == {Order.Status.DELIVERED}


def test_an_order_that_cannot_be_fulfilled_fails_alone_and_visibly(published, monkeypatch):
    """One order whose fulfilment raises must not fail every batch it is the
    first of: the batch is served one by one and that order goes to
    needs_attention with the error, for an operator to retry or refund."""

    orders = paid_orders(product_with_keys(keys=6, per_buyer_limit=1), 6)
    poison = orders[0]
    real_mark_sold = claims.cardkeys_mark_sold

    def mark_sold(*, assignments):
        if poison.id in assignments:
            raise ValueError("corrupt order")
        return real_mark_sold(assignments=assignments)

    monkeypatch.setattr(fulfilment, "cardkeys_mark_sold", mark_sold)
    # The task re-driven for that very order (reconcile's, say) too.
    report = fulfilment.fulfilment_run(order_id=poison.id)
    assert sorted(report.delivered) == sorted(o.order_no for o in orders[1:])
    assert report.short == [poison.order_no]
    poison.refresh_from_db()
    assert poison.status == Order.Status.NEEDS_ATTENTION
    assert "fulfilment failed: ValueError: corrupt order" in poison.attention_reason
    assert not CardKey.objects.filter(order=poison).exists()


def test_without_redis_to_ask_a_payment_publishes(published, monkeypatch):
    order = paid_orders(product_with_keys(keys=1), 1)[0]
    published.clear()
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr("apps.orders.services.fulfilment.stock_redis", lambda: unreachable)
    fulfilment.fulfilment_request_on_commit(order_id=order.id)
    fulfilment.fulfilment_request_on_commit(order_id=order.id)
    assert published == [order.id, order.id]


def test_the_drain_waits_for_a_paid_order_held_by_a_duplicate_notification(published):
    """When only held orders are left the drain waits for them: the holder
    may be a duplicate notification being turned away, which delivers nothing."""
    orders = paid_orders(product_with_keys(keys=3, per_buyer_limit=1), 3)
    with order_row_held_briefly(orders[1].id):
        report = fulfilment.fulfilment_run(order_id=None)
    assert sorted(report.delivered) == sorted(o.order_no for o in orders)
    assert set(Order.objects.values_list("status", flat=True)) == {Order.Status.DELIVERED}


def test_two_workers_draining_at_once_deliver_every_order_its_own_keys(published, settings):
    """Real concurrency on MariaDB: two drains (threads, own connections) take
    disjoint batches; every paid order ends delivered with exactly its keys."""
    settings.FULFIL_BATCH_SIZE = 7
    products = [product_with_keys(keys=120, per_buyer_limit=2) for _ in range(2)]
    orders = [o for p in products for o in paid_orders(p, 60, quantity=2)]
    reports, errors = [], []

    def worker():
        try:
            reports.append(fulfilment.fulfilment_run(order_id=None))
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and errors == []
    delivered = [no for r in reports for no in r.delivered]
    assert sorted(delivered) == sorted(o.order_no for o in orders)  # each once, by one drain
    for order in orders:
        keys = CardKey.objects.filter(order=order)
        assert keys.count() == 2 and {k.product_id for k in keys} == {order.product_id}
    assert CardKey.objects.filter(status="sold").count() == 240


def test_a_batch_in_progress_leaves_the_other_paid_orders_to_a_second_worker(published):
    """A batch locks only the orders it takes: the query walks paid orders in
    id order on an index and stops at the batch size, instead of locking every
    paid order before sorting them (which would leave a second worker nothing)."""
    paid_orders(product_with_keys(keys=30, per_buyer_limit=1), 30)
    taken, release = [], threading.Event()
    locked = threading.Event()

    def first_worker_mid_batch():
        try:
            with transaction.atomic():
                taken.extend(fulfilment._orders_lock_for_fulfilment(order_id=None, batch_size=10))
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=first_worker_mid_batch)
    holder.start()
    try:
        assert locked.wait(10)
        with transaction.atomic():
            second = fulfilment._orders_lock_for_fulfilment(order_id=None, batch_size=10)
    finally:
        release.set()
        holder.join(10)
    assert not holder.is_alive()
    assert len(taken) == 10 and len(second) == 10
    assert not {o.id for o in taken} & {o.id for o in second}
