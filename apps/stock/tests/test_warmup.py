"""A gate rebuilt while reservations still wait for persistence (a Redis that
kept its data, an operator's rebuild) keeps their stock and their buyers'
counts: they are sales the buyers were told were accepted."""

import pytest

from apps.orders.exceptions import LimitExceeded
from apps.orders.identity import buyer_identity
from apps.orders.models import Order
from apps.orders.services.checkout import order_checkout
from apps.orders.services.fulfilment import order_fulfil
from apps.orders.services.persistence import order_persist_queued
from apps.orders.services.reconcile import reconcile_run
from apps.orders.tests.support import product_with_keys
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import buyers_key, persist_queue_key
from apps.stock.selectors import stock_gate_state, stock_remaining
from apps.stock.warmup import stock_gate_rebuild

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_rebuild_counts_reservations_still_queued_for_persistence():
    product = product_with_keys(keys=5, per_buyer_limit=1)
    persisted = order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    order_persist_queued()
    queued = [order_checkout(sku=product.sku, email=f"q{n}@x.com", quantity=1) for n in range(2)]
    assert stock_redis().llen(persist_queue_key(product.id)) == 2

    assert stock_gate_rebuild(product=product) == (True, 2)

    _, reservations = stock_gate_state(product_id=product.id)
    assert set(reservations) == {persisted.order_no, *(r.order_no for r in queued)}
    with pytest.raises(LimitExceeded):  # the queued buyer is still counted
        order_checkout(sku=product.sku, email="q0@x.com", quantity=1)
    # Persistence still turns the queue into orders, and nothing drifted.
    assert order_persist_queued() == 2
    assert Order.objects.filter(product=product).count() == 3
    assert reconcile_run(drift_settle_seconds=0).drift_fixed == {}
    assert stock_remaining(product_id=product.id) == 2


def test_a_rebuild_counts_a_queued_reservation_already_persisted_once():
    """Persisted but not yet dropped from the queue (a worker lost between
    its commit and the queue trim): counted once, as the order it is."""
    product = product_with_keys(keys=5)
    result = order_checkout(sku=product.sku, email="a@x.com", quantity=2)
    entry = stock_redis().lindex(persist_queue_key(product.id), 0)
    order_persist_queued()
    stock_redis().rpush(persist_queue_key(product.id), entry)  # the trim that never happened

    assert stock_gate_rebuild(product=product) == (True, 3)
    assert order_persist_queued() == 1  # the entry leaves the queue; no second order
    assert Order.objects.filter(order_no=result.order_no).count() == 1
    assert stock_remaining(product_id=product.id) == 3


def test_an_unreadable_queued_entry_holds_no_stock_after_a_rebuild():
    product = product_with_keys(keys=5)
    order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    stock_redis().rpush(persist_queue_key(product.id), b"not a reservation")

    assert stock_gate_rebuild(product=product) == (True, 4)


def test_a_queued_entry_of_an_order_that_moved_on_is_not_counted_again(monkeypatch):
    """The queue kept an entry whose order was since delivered (a Redis
    restored from an old append-only file, a lost queue trim): its keys are
    sold, and a rebuild must count neither its stock nor its buyer again."""
    monkeypatch.setattr("apps.orders.tasks.send_order_keys_emails_task.delay", lambda order_ids: None)
    product = product_with_keys(keys=5, per_buyer_limit=2)
    result = order_checkout(sku=product.sku, email="a@x.com", quantity=2)
    entry = stock_redis().lindex(persist_queue_key(product.id), 0)
    order_persist_queued()
    order = Order.objects.get(order_no=result.order_no)
    Order.objects.filter(id=order.id).update(status=Order.Status.PAID)
    assert order_fulfil(order_id=order.id).delivered == [order.order_no]
    stock_redis().rpush(persist_queue_key(product.id), entry)

    assert stock_gate_rebuild(product=product) == (True, 3)
    assert stock_redis().hget(buyers_key(product.id), "e:" + buyer_identity(email="a@x.com")) == b"2"
