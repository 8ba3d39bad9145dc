"""Coupons at checkout: validity, the discount on the order, uses taken with
the stock and given back (refusal, expiry, cancel, refund) exactly once, and
the counters rebuilt from the record after Redis loses them."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.catalog.models import ProductPriceTier
from apps.coupons.exceptions import (
    CouponExpired,
    CouponInvalid,
    CouponLimitExceeded,
    CouponNotApplicable,
    CouponUsedUp,
)
from apps.coupons.selectors import coupon_info_get, coupon_uses_taken
from apps.coupons.services import coupon_claims_reconcile, coupon_claims_restore, coupon_use_return, coupon_use_take
from apps.orders.exceptions import SalePaused, SoldOut
from apps.orders.models import Order
from apps.orders.services import expiry, payment, persistence
from apps.orders.services.cancel import order_cancel
from apps.orders.services.checkout import order_checkout
from apps.orders.services.reconcile import reconcile_run
from apps.orders.tests.support import pay, persist_task_marked_waiting, product_with_keys
from apps.stock import services as stock_services
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import coupon_claims_key, coupon_uses_key
from apps.stock.selectors import stock_remaining
from apps.stock.warmup import gates_check_redis_restart, stock_warm

from .factories import CouponFactory

pytestmark = pytest.mark.django_db(transaction=True)


def buy(product, *, email="buyer@example.com", quantity=1, coupon=None, key=None):
    return order_checkout(sku=product.sku, email=email, quantity=quantity, coupon=coupon, idempotency_key=key)


def persisted(result) -> Order:
    persistence.order_persist_queued()
    return Order.objects.get(order_no=result.order_no)


def test_a_percent_coupon_any_case_is_stored_on_the_order_and_paid():
    product = product_with_keys(keys=5)
    CouponFactory(code="Spring10", kind="percent", value=Decimal("10"))
    order = persisted(buy(product, quantity=3, coupon="  spring10 "))
    # 3 × 9.90 = 29.70, 10 % off = 2.97
    assert (order.coupon_code, order.discount, order.amount) == ("SPRING10", Decimal("2.97"), Decimal("26.73"))
    assert order.unit_price == Decimal("9.90")
    pay(order.order_no)  # the payment must match the discounted amount
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID


def test_a_fixed_coupon_never_takes_the_total_below_one_cent():
    product = product_with_keys(keys=5)
    CouponFactory(code="BIG", kind="fixed", value=Decimal("500"))
    order = persisted(buy(product, coupon="big"))
    assert (order.discount, order.amount) == (Decimal("9.89"), Decimal("0.01"))


def test_tier_and_coupon_together():
    product = product_with_keys(keys=20, max_per_order=20, per_buyer_limit=20)
    ProductPriceTier.objects.create(product=product, min_quantity=10, unit_price=Decimal("4.50"))
    CouponFactory(code="FIVE", kind="fixed", value=Decimal("5"))
    order = persisted(buy(product, quantity=10, coupon="five"))
    assert (order.unit_price, order.discount, order.amount) == (Decimal("4.50"), Decimal("5.00"), Decimal("40.00"))


@pytest.mark.parametrize(
    ("fields", "typed", "error"),
    [
        ({"code": "OFF"}, "nope", CouponInvalid),
        ({"code": "OFF", "is_active": False}, "off", CouponInvalid),
        ({"code": "OFF", "valid_from": timezone.now() + timedelta(hours=1)}, "off", CouponInvalid),
        ({"code": "OFF", "valid_until": timezone.now() - timedelta(seconds=1)}, "off", CouponExpired),
    ],
)
def test_refused_coupons_reserve_nothing(fields, typed, error):
    product = product_with_keys(keys=3)
    CouponFactory(**fields)
    with pytest.raises(error):
        buy(product, coupon=typed)
    assert stock_remaining(product_id=product.id) == 3


def test_a_coupon_for_other_products_is_not_applicable():
    product, other = product_with_keys(keys=3), product_with_keys(keys=3)
    coupon = CouponFactory(code="ONLY")
    coupon.products.add(other)
    with pytest.raises(CouponNotApplicable):
        buy(product, coupon="only")
    assert persisted(buy(other, coupon="only")).coupon_id == coupon.id


def test_uses_are_capped_and_a_refused_checkout_gives_its_use_back():
    product = product_with_keys(keys=2, per_buyer_limit=5)
    coupon = CouponFactory(code="TWO", max_uses=2)
    buy(product, email="a@x.com", coupon="two")
    with pytest.raises(SoldOut):
        buy(product, email="b@x.com", quantity=2, coupon="two")  # stock refuses: the use returns
    assert coupon_uses_taken(coupon_id=coupon.id) == 1
    buy(product, email="c@x.com", coupon="two")
    assert coupon_uses_taken(coupon_id=coupon.id) == 2
    product2 = product_with_keys(keys=2)
    with pytest.raises(CouponUsedUp):
        buy(product2, email="d@x.com", coupon="two")
    assert stock_remaining(product_id=product2.id) == 2


def test_uses_per_buyer_count_the_mailbox():
    product = product_with_keys(keys=5, per_buyer_limit=5, max_unpaid_per_buyer=5)
    CouponFactory(code="ONCE", max_uses_per_buyer=1)
    buy(product, email="Jane.Doe+a@gmail.com", coupon="once")
    with pytest.raises(CouponLimitExceeded):
        buy(product, email="janedoe@googlemail.com", coupon="once")
    buy(product, email="janedoe@googlemail.com")  # without the coupon: fine
    assert stock_remaining(product_id=product.id) == 3


def test_an_idempotent_retry_gets_its_order_not_a_coupon_refusal():
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="ONCE", max_uses_per_buyer=1, max_uses=1)
    first = buy(product, coupon="once", key="k-1")
    again = buy(product, coupon="once", key="k-1")
    assert again.order_no == first.order_no
    assert coupon_uses_taken(coupon_id=coupon.id) == 1


def test_expiry_and_cancel_give_the_use_back_once(published):
    product = product_with_keys(keys=5, per_buyer_limit=5, max_unpaid_per_buyer=5)
    coupon = CouponFactory(code="BACK", max_uses=5)
    expired, cancelled = buy(product, email="a@x.com", coupon="back"), buy(product, email="b@x.com", coupon="back")
    persistence.order_persist_queued()
    assert coupon_uses_taken(coupon_id=coupon.id) == 2
    Order.objects.filter(order_no=expired.order_no).update(reserved_until=timezone.now() - timedelta(seconds=1))
    assert expiry.order_expire_due() == 1
    assert coupon_uses_taken(coupon_id=coupon.id) == 1
    order_cancel(order_no=cancelled.order_no)
    order_cancel(order_no=cancelled.order_no)  # twice: given back once
    assert coupon_uses_taken(coupon_id=coupon.id) == 0
    assert coupon_claims_reconcile(grace_seconds=0) == []
    assert coupon_uses_taken(coupon_id=coupon.id) == 0


def test_a_late_payment_after_expiry_holds_its_use_again(published):
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="LATE")
    result = buy(product, coupon="late")
    order = persisted(result)
    Order.objects.filter(pk=order.pk).update(reserved_until=timezone.now() - timedelta(seconds=1))
    expiry.order_expire_due()
    assert coupon_uses_taken(coupon_id=coupon.id) == 0
    pay(order.order_no)
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID
    assert coupon_uses_taken(coupon_id=coupon.id) == 1


def test_a_refund_gives_the_use_back_once(published, monkeypatch):
    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: None)
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="REFUND")
    order = persisted(buy(product, coupon="refund"))
    pay(order.order_no)
    payment.order_refund_start(order_ids=[order.id], reason="buyer asked")
    assert coupon_uses_taken(coupon_id=coupon.id) == 0
    payment.order_mark_refunded(
        order_no=order.order_no, provider="sandbox", event_id="r-1", amount=order.amount, currency=order.currency
    )
    assert Order.objects.get(pk=order.pk).status == Order.Status.REFUNDED
    assert coupon_uses_taken(coupon_id=coupon.id) == 0


def test_counters_lost_with_redis_are_rebuilt_from_orders_and_queued_reservations(published):
    product = product_with_keys(keys=10, per_buyer_limit=10, max_unpaid_per_buyer=10)
    coupon = CouponFactory(code="LOST", max_uses=3, max_uses_per_buyer=2)
    persisted(buy(product, email="a@x.com", coupon="lost"))
    # The second is still queued in the gate (not an order yet) when the coupon's keys vanish.
    persist_task_marked_waiting(product)
    buy(product, email="a@x.com", coupon="lost")
    stock_redis().delete(coupon_uses_key(coupon.id), coupon_claims_key(coupon.id))
    assert coupon_uses_taken(coupon_id=coupon.id) is None
    with pytest.raises(CouponLimitExceeded):
        buy(product, email="a@x.com", coupon="lost")  # a@x.com holds 2 (one order, one queued)
    assert coupon_uses_taken(coupon_id=coupon.id) == 2
    buy(product, email="b@x.com", coupon="lost")
    with pytest.raises(CouponUsedUp):
        buy(product, email="c@x.com", coupon="lost")


def test_a_use_taken_by_a_checkout_that_died_is_given_back_by_reconcile():
    product = product_with_keys(keys=5)
    CouponFactory(code="CRASH", max_uses=1)
    coupon = coupon_info_get(code="crash")
    # The process took the use, then died before checkout.lua ran.
    coupon_use_take(coupon=coupon, order_no=f"261129-{product.id}-DEADBEEF0000", buyer="e:x", product_id=product.id)
    with pytest.raises(CouponUsedUp):
        buy(product, coupon="crash")
    assert coupon_claims_reconcile() == []  # young: it may still be on its way
    assert coupon_claims_reconcile(grace_seconds=0) == [f"261129-{product.id}-DEADBEEF0000"]
    assert persisted(buy(product, coupon="crash")).coupon_code == "CRASH"


def test_the_api_takes_a_coupon_and_answers_coupon_errors(client):
    product = product_with_keys(keys=5)
    CouponFactory(code="API5", kind="fixed", value=Decimal("5"), max_uses=1)

    def create(body):
        return client.post("/api/v1/orders", data=json.dumps(body), content_type="application/json")

    ok = create({"sku": product.sku, "email": "a@x.com", "quantity": 1, "coupon": "api5"})
    assert ok.status_code == 202
    used_up = create({"sku": product.sku, "email": "b@x.com", "quantity": 1, "coupon": "API5"})
    assert (used_up.status_code, used_up.json()["error"]) == (409, "coupon_used_up")
    invalid = create({"sku": product.sku, "email": "b@x.com", "quantity": 1, "coupon": "what"})
    assert (invalid.status_code, invalid.json()["error"]) == (400, "coupon_invalid")
    status = client.get(ok.json()["status_url"], headers={"X-Order-Token": ok.json()["access_token"]})
    assert status.json()["amount"] == "4.90"


def test_the_order_shows_its_coupon_queued_and_placed(client):
    product = product_with_keys(keys=5)
    CouponFactory(code="SHOWN", kind="fixed", value=Decimal("1.00"))
    body = {"sku": product.sku, "email": "a@x.com", "quantity": 1, "coupon": "shown"}
    placed = client.post("/api/v1/orders", data=json.dumps(body), content_type="application/json").json()
    headers = {"X-Order-Token": placed["access_token"]}
    queued = client.get(placed["status_url"], headers=headers).json()
    assert (queued["status"], queued["coupon"], queued["discount"], queued["amount"]) == (
        "queued",
        "SHOWN",
        "1.00",
        "8.90",
    )
    persistence.order_persist_queued()
    awaiting = client.get(placed["status_url"], headers=headers).json()
    assert (awaiting["coupon"], awaiting["discount"], awaiting["amount"]) == ("SHOWN", "1.00", "8.90")
    page = client.get(f"/orders/{placed['order_no']}?token={placed['access_token']}", headers={"Accept-Language": "en"})
    assert "<code>SHOWN</code> −¥1.00" in page.content.decode()


def test_gates_distrusted_after_a_redis_restart_drop_the_coupon_counters_too(monkeypatch):
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="RESTART", max_uses=5)
    persisted(buy(product, coupon="restart"))
    stock_redis().set(coupon_uses_key(coupon.id), 4)  # a counter that lags or drifted
    monkeypatch.setattr(
        stock_services,
        "stock_redis_restarts",
        lambda: stock_services.GateRestarts(restarted=frozenset({""}), markers=()),
    )
    gates_check_redis_restart()
    assert coupon_uses_taken(coupon_id=coupon.id) is None
    stock_warm(product=product)  # the product's gate is rebuilt too
    buy(product, email="b@x.com", coupon="restart")  # recounted from the record first
    assert coupon_uses_taken(coupon_id=coupon.id) == 2


def test_a_coupon_deleted_while_its_order_is_queued_still_becomes_that_order(published):
    """Review item 7: a 202 is a promise. The coupon row may vanish (a shell,
    a fixture) while a reservation with it still waits for MariaDB: the order
    is written with the code and the discount it was placed with."""
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="GONE", kind="fixed", value=Decimal("1.00"))
    persist_task_marked_waiting(product)
    queued = buy(product, coupon="gone")
    others = [buy(product, email=f"n{i}@x.com") for i in range(2)]  # in the same batch
    coupon.delete()
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=queued.order_no)
    assert (order.coupon_id, order.coupon_code, order.discount, order.amount) == (
        None,
        "GONE",
        Decimal("1.00"),
        Decimal("8.90"),
    )
    assert Order.objects.filter(order_no__in=[o.order_no for o in others]).count() == 2


def test_deleting_a_coupon_keeps_its_orders_and_their_code(published):
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="KEPT", kind="fixed", value=Decimal("1.00"))
    order = persisted(buy(product, coupon="kept"))
    coupon.delete()  # no longer refused by the orders that used it
    order.refresh_from_db()
    assert (order.coupon_id, order.coupon_code, order.discount) == (None, "KEPT", Decimal("1.00"))


def _reserve_then_time_out(monkeypatch, *, ran: bool):
    """stock_reserve as a Redis timeout sees it: the script ran (or not), the answer was lost."""
    real = stock_services.stock_reserve

    def timed_out(**call):
        if ran:
            real(**call)
        raise RedisTimeoutError("Timeout reading from socket")

    monkeypatch.setattr(stock_services, "stock_reserve", timed_out)
    return real


def test_a_checkout_timing_out_after_reserving_keeps_its_use_so_the_cap_holds(published, monkeypatch):
    """Review item 2: the timeout came after checkout.lua stored the
    reservation. Giving the use back then lets a retry get that order
    (duplicate) while another buyer takes the use: one use over the cap."""
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="TIMEOUT", max_uses=1)
    real = _reserve_then_time_out(monkeypatch, ran=True)
    with pytest.raises(SalePaused):
        buy(product, email="a@x.com", coupon="timeout", key="k-1")
    monkeypatch.setattr(stock_services, "stock_reserve", real)
    retry = buy(product, email="a@x.com", coupon="timeout", key="k-1")
    assert coupon_uses_taken(coupon_id=coupon.id) == 1
    with pytest.raises(CouponUsedUp):
        buy(product, email="b@x.com", coupon="timeout")
    # Reconciliation leaves it: the gate holds the reservation, then MariaDB the order.
    assert coupon_claims_reconcile(grace_seconds=0) == []
    assert persisted(retry).coupon_code == "TIMEOUT"
    assert coupon_claims_reconcile(grace_seconds=0) == []
    assert coupon_uses_taken(coupon_id=coupon.id) == 1


def test_a_checkout_timing_out_before_reserving_leaves_a_use_reconcile_gives_back(monkeypatch):
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="NOTRUN", max_uses=1)
    real = _reserve_then_time_out(monkeypatch, ran=False)
    with pytest.raises(SalePaused):
        buy(product, email="a@x.com", coupon="notrun")
    monkeypatch.setattr(stock_services, "stock_reserve", real)
    assert coupon_uses_taken(coupon_id=coupon.id) == 1  # ambiguous: kept, not given back
    assert coupon_claims_reconcile() == []  # within COUPON_CLAIM_GRACE_SECONDS: it may be on its way
    [orphan] = coupon_claims_reconcile(grace_seconds=0)  # no reservation, no order holds it
    assert coupon_uses_taken(coupon_id=coupon.id) == 0
    assert persisted(buy(product, email="b@x.com", coupon="notrun")).coupon_code == "NOTRUN"


def test_a_paid_order_whose_use_went_back_is_counted_again_by_reconcile(published):
    """A late payment takes its use inside its transaction; a reconciliation
    that read the order as expired just before that commit gives the use back
    (the order did not count then). The paid order holds none: the next run
    counts it again."""
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="RETAKE")
    order = persisted(buy(product, coupon="retake"))
    Order.objects.filter(pk=order.pk).update(reserved_until=timezone.now() - timedelta(seconds=1))
    expiry.order_expire_due()
    pay(order.order_no)
    assert Order.objects.get(pk=order.pk).status == Order.Status.PAID
    assert coupon_use_return(coupon_id=coupon.id, order_no=order.order_no)  # the racing reconcile
    assert coupon_uses_taken(coupon_id=coupon.id) == 0  # the paid order holds no use
    report = reconcile_run(drift_settle_seconds=0)
    assert report.coupon_uses_restored == [order.order_no] and report.coupon_uses_returned == []
    assert coupon_uses_taken(coupon_id=coupon.id) == 1
    assert coupon_claims_restore() == []
    assert coupon_claims_reconcile(grace_seconds=0) == []
    assert coupon_uses_taken(coupon_id=coupon.id) == 1


def test_a_late_payment_past_the_coupon_cap_goes_to_refund_pending(published, monkeypatch):
    """Review item 8: as a late payment with no key left is refunded, one whose
    coupon use went to another buyer meanwhile is refunded too: the cap holds."""
    refunds = []
    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", refunds.append)
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="CAPPED", max_uses=1)
    late = persisted(buy(product, email="a@x.com", coupon="capped"))
    Order.objects.filter(pk=late.pk).update(reserved_until=timezone.now() - timedelta(seconds=1))
    expiry.order_expire_due()
    persisted(buy(product, email="b@x.com", coupon="capped"))  # the use went to b
    left = stock_remaining(product_id=product.id)
    pay(late.order_no)
    late.refresh_from_db()
    assert late.status == Order.Status.REFUND_PENDING and "coupon" in late.attention_reason
    assert refunds == [late.id]
    assert coupon_uses_taken(coupon_id=coupon.id) == 1
    assert stock_remaining(product_id=product.id) == left  # it took no key
    assert coupon_claims_reconcile(grace_seconds=0) == [] and coupon_claims_restore() == []


def test_a_late_payment_past_the_per_buyer_cap_goes_to_refund_pending(published, monkeypatch):
    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: None)
    product = product_with_keys(keys=5, per_buyer_limit=5, max_unpaid_per_buyer=5)
    coupon = CouponFactory(code="ONCE", max_uses_per_buyer=1)
    late = persisted(buy(product, email="a@x.com", coupon="once"))
    Order.objects.filter(pk=late.pk).update(reserved_until=timezone.now() - timedelta(seconds=1))
    expiry.order_expire_due()
    persisted(buy(product, email="a@x.com", coupon="once"))  # the same buyer used it again
    pay(late.order_no)
    assert Order.objects.get(pk=late.pk).status == Order.Status.REFUND_PENDING
    assert coupon_uses_taken(coupon_id=coupon.id) == 1


def test_a_late_payment_sold_out_meanwhile_gives_back_the_use_it_took_again(published, monkeypatch):
    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: None)
    product = product_with_keys(keys=1)
    coupon = CouponFactory(code="SOLD", max_uses=5)
    late = persisted(buy(product, email="a@x.com", coupon="sold"))
    Order.objects.filter(pk=late.pk).update(reserved_until=timezone.now() - timedelta(seconds=1))
    expiry.order_expire_due()
    persisted(buy(product, email="b@x.com"))  # the last key, without the coupon
    pay(late.order_no)
    late.refresh_from_db()
    assert late.status == Order.Status.REFUND_PENDING and "sold out" in late.attention_reason
    assert coupon_uses_taken(coupon_id=coupon.id) == 0


def test_a_late_payment_meeting_a_redis_error_at_its_coupon_changes_nothing(published, monkeypatch):
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="RETRY")
    late = persisted(buy(product, coupon="retry"))
    Order.objects.filter(pk=late.pk).update(reserved_until=timezone.now() - timedelta(seconds=1))
    expiry.order_expire_due()

    def redis_down(**kwargs):
        raise RedisTimeoutError("Timeout reading from socket")

    real = payment.coupon_use_retake
    monkeypatch.setattr(payment, "coupon_use_retake", redis_down)
    with pytest.raises(RedisTimeoutError):
        pay(late.order_no)  # rolled back: the provider sends it again
    assert Order.objects.get(pk=late.pk).status == Order.Status.EXPIRED
    monkeypatch.setattr(payment, "coupon_use_retake", real)
    pay(late.order_no)
    assert Order.objects.get(pk=late.pk).status == Order.Status.PAID
    assert coupon_uses_taken(coupon_id=coupon.id) == 1
