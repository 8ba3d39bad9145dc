"""The chaos suite's invariant checks (chaos/invariants.py): each passes on a
sound state and reports a state built to break it, naming what broke."""

import pytest

from apps.cardkeys.models import CardKey
from apps.cardkeys.tests.factories import CardKeyFactory
from apps.catalog.tests.factories import ProductFactory
from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory
from apps.payments.tests.factories import PaymentEventFactory
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key
from chaos import invariants

pytestmark = pytest.mark.django_db


def sold_key(order: Order, secret: str | None = None) -> CardKey:
    extra = {"secret": secret} if secret else {}
    return CardKeyFactory(product=order.product, status=CardKey.Status.SOLD, order=order, **extra)


@pytest.fixture
def sound_sale():
    """3 keys: one delivered (paid once), one order awaiting payment holding a
    key, one key free; the gate says 1 left."""
    product = ProductFactory()
    delivered = OrderFactory(product=product, status=Order.Status.DELIVERED)
    sold_key(delivered)
    PaymentEventFactory(order=delivered)
    OrderFactory(product=product)
    CardKeyFactory.create_batch(2, product=product)
    stock_redis().set(stock_key(product.id), 1)
    return product


def codes_failing(product, **kwargs) -> dict:
    checks = invariants.invariants_check(product_ids=[product.id], gate=stock_redis(), **kwargs)
    assert [c.code for c in checks] == ["I1", "I2", "I3", "I4", "I5"]
    return {c.code: list(c.violations) for c in checks if not c.ok}


def test_a_sound_sale_passes_every_check(sound_sale):
    assert codes_failing(sound_sale) == {}


def test_i1_reports_orders_holding_more_keys_than_were_imported(sound_sale):
    OrderFactory(product=sound_sale, quantity=2)  # 1 + 1 + 2 = 4 keys sold of 3
    failing = codes_failing(sound_sale)
    assert failing["I1"] == [f"{sound_sale.sku}: 4 sold of 3 keys"]


def test_i1_does_not_count_voided_or_revoked_keys_as_sellable(sound_sale):
    CardKey.objects.filter(product=sound_sale, status="available").update(status="void")
    assert "I1" in codes_failing(sound_sale)  # 2 sold, 1 sellable


def test_i2_reports_one_secret_sold_to_two_orders():
    first, second = ProductFactory(), ProductFactory()
    a = OrderFactory(product=first, status=Order.Status.DELIVERED)
    b = OrderFactory(product=second, status=Order.Status.DELIVERED)
    sold_key(a, secret="SAME-SECRET")
    sold_key(b, secret="SAME-SECRET")
    check = invariants.no_key_on_two_orders(product_ids=[first.id, second.id])
    assert not check.ok
    assert check.violations[0].endswith(f"on 2 orders: {','.join(sorted([a.order_no, b.order_no]))}")
    assert invariants.no_key_on_two_orders(product_ids=[first.id]).ok


def test_i3_reports_a_paid_order_left_undelivered(sound_sale):
    stuck = OrderFactory(product=sound_sale, status=Order.Status.PAID)
    stock_redis().set(stock_key(sound_sale.id), 0)  # it holds the free key: I1 and I5 stay sound
    assert codes_failing(sound_sale) == {"I3": [f"{stuck.order_no} paid, not delivered, not flagged"]}


@pytest.mark.parametrize("status", ["needs_attention", "refund_pending", "refunded"])
def test_i3_accepts_a_paid_order_in_a_flagged_state(sound_sale, status):
    flagged = OrderFactory(product=sound_sale, status=status)
    PaymentEventFactory(order=flagged)
    assert invariants.paid_orders_delivered_or_flagged(product_ids=[sound_sale.id]).ok


def test_i3_reports_a_delivered_order_without_its_keys(sound_sale):
    empty = OrderFactory(product=sound_sale, status=Order.Status.DELIVERED, quantity=2)
    sold_key(empty)
    check = invariants.paid_orders_delivered_or_flagged(product_ids=[sound_sale.id])
    assert check.violations == (f"{empty.order_no} delivered with 1 of 2 keys",)


def test_i3_reports_a_recorded_payment_on_an_order_that_is_not_paid(sound_sale):
    expired = OrderFactory(product=sound_sale, status=Order.Status.EXPIRED)
    PaymentEventFactory(order=expired)
    check = invariants.paid_orders_delivered_or_flagged(product_ids=[sound_sale.id])
    assert check.violations == (f"{expired.order_no} has a recorded payment but is expired",)


def test_i4_reports_an_order_paid_twice_unless_flagged_overpaid(sound_sale):
    order = Order.objects.get(product=sound_sale, status="delivered")
    PaymentEventFactory(order=order, event_id="second-payment")
    check = invariants.one_effect_per_payment_event(product_ids=[sound_sale.id])
    assert check.violations == (f"{order.order_no} paid by 2 events, not flagged overpaid",)
    Order.objects.filter(id=order.id).update(overpaid=True)
    assert invariants.one_effect_per_payment_event(product_ids=[sound_sale.id]).ok


def test_i4_reports_an_order_served_twice(sound_sale):
    order = Order.objects.get(product=sound_sale, status="delivered")
    sold_key(order)
    check = invariants.one_effect_per_payment_event(product_ids=[sound_sale.id])
    assert check.violations == (f"{order.order_no} holds 2 keys for 1 bought",)


def test_i4_reports_a_notification_answered_2xx_but_not_recorded_or_recorded_elsewhere(sound_sale):
    delivered = Order.objects.get(product=sound_sale, status="delivered")
    waiting = Order.objects.get(product=sound_sale, status="awaiting_payment")
    recorded = delivered.payment_events.get().event_id
    assert invariants.one_effect_per_payment_event(
        product_ids=[sound_sale.id], acknowledged={recorded: delivered.order_no}
    ).ok
    check = invariants.one_effect_per_payment_event(
        product_ids=[sound_sale.id], acknowledged={recorded: waiting.order_no, "evt-lost": waiting.order_no}
    )
    assert check.violations == (
        f"{recorded} recorded against {delivered.order_no}, sent for {waiting.order_no}",
        "evt-lost answered 2xx but not recorded",
    )


def test_i5_reports_a_gate_counter_that_disagrees_with_the_database_or_is_missing(sound_sale):
    stock_redis().set(stock_key(sound_sale.id), 2)
    assert codes_failing(sound_sale) == {"I5": [f"{sound_sale.sku}: Redis stock 2, database says 2 available - 1 held"]}
    stock_redis().delete(stock_key(sound_sale.id))
    assert codes_failing(sound_sale) == {"I5": [f"{sound_sale.sku}: no stock counter in Redis (expected 1)"]}


def test_acknowledged_checkouts_kept_reports_a_202_that_never_became_an_order(sound_sale):
    order = Order.objects.filter(product=sound_sale).first()
    assert invariants.acknowledged_checkouts_kept(order_nos=[order.order_no]).ok
    check = invariants.acknowledged_checkouts_kept(order_nos=[order.order_no, "LOST-1"])
    assert check.violations == ("LOST-1 answered 202, no order",)


def test_a_long_list_of_violations_is_cut_and_counted():
    product = ProductFactory()
    for _ in range(invariants.SHOWN + 3):
        OrderFactory(product=product, status=Order.Status.PAID)
    check = invariants.paid_orders_delivered_or_flagged(product_ids=[product.id])
    assert (len(check.violations), check.more) == (invariants.SHOWN, 3)
    assert check.summary().endswith("(+3 more)")
