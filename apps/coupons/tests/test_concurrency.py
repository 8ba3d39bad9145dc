"""A coupon's caps hold under a flash crowd, against the real MariaDB and
Redis: many threads check out at once, each taking the coupon's use and the
stock in their two scripts, and the refused ones giving their use back."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connections

from apps.cardkeys.models import CardKey
from apps.catalog.models import ProductPriceTier
from apps.core.errors import ShopError
from apps.coupons.selectors import coupon_uses_taken
from apps.orders.models import Order
from apps.orders.services import fulfilment, persistence
from apps.orders.services.checkout import order_checkout
from apps.orders.tests.support import pay, persist_task_marked_waiting, product_with_keys
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import coupon_buyers_key, coupon_claims_key, coupon_uses_key, persist_queue_key
from apps.stock.selectors import stock_remaining

from .factories import CouponFactory

pytestmark = pytest.mark.django_db(transaction=True)


def crowd(calls: list[dict], *, threads: int = 64) -> Counter:
    """Run the checkouts at once (a barrier releases each thread's first one
    together); returns how many ended each way ("ok" or the error code)."""
    start = threading.Barrier(min(threads, len(calls)))
    outcomes: Counter = Counter()
    lock = threading.Lock()
    started = threading.local()

    def one(call):
        if not getattr(started, "yes", False):
            started.yes = True
            start.wait(30)
        try:
            order_checkout(**call)
            code = "ok"
        except ShopError as error:
            code = error.code
        finally:
            connections.close_all()
        with lock:
            outcomes[code] += 1

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, calls))
    return outcomes


@pytest.fixture
def uncapped_rate(settings):
    settings.CHECKOUT_RATE_PER_SECOND = 0  # the per-product token bucket is another test's subject
    settings.UNPAID_CAP_PER_IP = 0


def test_a_coupon_capped_at_100_is_used_100_times_by_500_buyers_at_once(uncapped_rate):
    product = product_with_keys(keys=700, per_buyer_limit=5, max_per_order=5)
    coupon = CouponFactory(code="FLASH100", kind="percent", value=Decimal("20"), max_uses=100)
    # Every fifth buyer asks for too many: checkout.lua refuses them after
    # their coupon use was taken, so the crowd exercises the give-back too.
    calls = [
        {"sku": product.sku, "email": f"buyer{i}@x.com", "quantity": 6 if i % 5 == 0 else 1, "coupon": "flash100"}
        for i in range(500)
    ]
    outcomes = crowd(calls)
    assert outcomes["ok"] == 100, outcomes
    assert outcomes["coupon_used_up"] + outcomes["invalid"] == 400, outcomes
    persistence.order_persist_queued()
    orders = Order.objects.filter(product=product)
    assert orders.count() == 100
    assert orders.filter(coupon=coupon, discount=Decimal("1.98"), amount=Decimal("7.92")).count() == 100
    assert coupon_uses_taken(coupon_id=coupon.id) == 100
    # P1: the gate's stock and the orders add up to the keys uploaded.
    keys = CardKey.objects.filter(product=product).count()
    assert stock_remaining(product_id=product.id) + sum(o.quantity for o in orders) == keys


def test_one_use_per_buyer_used_20_times_at_once_by_one_mailbox_is_used_once(uncapped_rate):
    product = product_with_keys(keys=50, per_buyer_limit=20, max_unpaid_per_buyer=20)
    coupon = CouponFactory(code="ONEEACH", max_uses_per_buyer=1)
    emails = [f"Same.Buyer+{i}@gmail.com" for i in range(20)]  # one mailbox
    outcomes = crowd([{"sku": product.sku, "email": e, "quantity": 1, "coupon": "oneeach"} for e in emails])
    assert outcomes == Counter({"ok": 1, "coupon_limit_exceeded": 19})
    persistence.order_persist_queued()
    assert Order.objects.filter(product=product, coupon=coupon).count() == 1
    assert stock_remaining(product_id=product.id) == 49


def test_an_order_keeps_its_checkout_price_whatever_changes_after(published):
    """Product price, tiers and coupon all change after checkout, before the
    order is even written: order, payment and delivery keep the checkout's price."""
    product = product_with_keys(keys=20, max_per_order=20, per_buyer_limit=20)
    ProductPriceTier.objects.create(product=product, min_quantity=10, unit_price=Decimal("4.50"))
    coupon = CouponFactory(code="KEEP", kind="percent", value=Decimal("10"))
    persist_task_marked_waiting(product)  # stays a queued reservation for now
    result = order_checkout(sku=product.sku, email="keep@x.com", quantity=10, coupon="keep")

    product.price = Decimal("20.00")
    product.save()
    ProductPriceTier.objects.filter(product=product).update(unit_price=Decimal("1.00"))
    ProductPriceTier.objects.create(product=product, min_quantity=5, unit_price=Decimal("0.50"))
    coupon.kind, coupon.value = "fixed", Decimal("40.00")
    coupon.save()

    persistence.order_persist_queued()
    order = Order.objects.get(order_no=result.order_no)
    # 10 × 4.50 = 45.00, 10 % off = 4.50
    assert (order.unit_price, order.discount, order.amount) == (Decimal("4.50"), Decimal("4.50"), Decimal("40.50"))
    pay(order.order_no)  # the provider is paid the checkout's amount, and it matches
    fulfilment.fulfilment_run(order_id=None)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert (order.unit_price, order.discount, order.amount) == (Decimal("4.50"), Decimal("4.50"), Decimal("40.50"))
    assert order.payment_events.get().amount == Decimal("40.50")


def _waiting_on_a_named_lock() -> bool:
    """Is some session of this test run waiting in GET_LOCK (a fence)?"""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User lock'")
        return cursor.fetchone()[0] > 0


def test_a_coupon_rebuild_waits_for_a_persist_batch_read_before_redis_lost_the_counters(published, monkeypatch):
    """Review item 3: a batch the persister peeked before Redis lost the
    coupon's counters (and the queue) commits only after the rebuild read
    MariaDB. The rebuild holds the products' persist fences, as warm-up does,
    so it counts that order: the cap of 1 holds."""
    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="FENCE", max_uses=1)
    coupon.products.set([product])
    persist_task_marked_waiting(product)
    first = order_checkout(sku=product.sku, email="a@x.com", quantity=1, coupon="fence")

    peeked, go = threading.Event(), threading.Event()
    real_persist = persistence.order_persist_reservations

    def persist_slowly(**kwargs):
        peeked.set()
        assert go.wait(30)
        return real_persist(**kwargs)

    monkeypatch.setattr(persistence, "order_persist_reservations", persist_slowly)
    outcome: dict = {}

    def persister():
        try:
            persistence.order_persist_queued(product_ids=[product.id])
        finally:
            connections.close_all()

    def second_buyer():
        try:
            order_checkout(sku=product.sku, email="b@x.com", quantity=1, coupon="fence")
            outcome["b"] = "ok"
        except ShopError as error:
            outcome["b"] = error.code
        finally:
            connections.close_all()

    persisting = threading.Thread(target=persister)
    persisting.start()
    assert peeked.wait(30)
    # Redis loses the coupon's counters and the queue the batch was read from.
    stock_redis().delete(
        coupon_uses_key(coupon.id),
        coupon_buyers_key(coupon.id),
        coupon_claims_key(coupon.id),
        persist_queue_key(product.id),
    )
    buying = threading.Thread(target=second_buyer)
    buying.start()
    # Let the second buyer run until it is done or waits on the fence.
    for _ in range(300):
        if not buying.is_alive() or _waiting_on_a_named_lock():
            break
        buying.join(0.05)
    go.set()
    persisting.join(30)
    buying.join(30)
    assert Order.objects.filter(order_no=first.order_no, coupon=coupon).exists()
    assert outcome["b"] == "coupon_used_up", outcome
    assert coupon_uses_taken(coupon_id=coupon.id) == 1


def test_a_double_click_with_a_one_use_per_buyer_coupon_places_one_order_and_answers_it_twice(monkeypatch):
    """Review item 6: the second request (same idempotency key) takes its use
    while the first is between its use and its reservation. It must get the
    first order, not coupon_limit_exceeded. The first to reach the stock
    waits until the other request has finished, so the overlap is certain."""
    from apps.orders.services import checkout as checkout_module
    from apps.stock import services as stock_services

    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="DOUBLE", max_uses_per_buyer=1)
    real_reserve = stock_services.stock_reserve
    first_in, other_done = threading.Lock(), threading.Event()
    waited = []

    def reserve(**call):
        if first_in.acquire(blocking=False):
            waited.append(other_done.wait(30))
        return real_reserve(**call)

    monkeypatch.setattr(checkout_module.stock, "stock_reserve", reserve)
    results, errors = _double_click(product, coupon="double", other_done=other_done)
    assert waited == [True]
    assert errors == []
    assert len({(r.order_no, r.access_token) for r in results}) == 1 and len(results) == 2
    persistence.order_persist_queued()
    assert Order.objects.filter(product=product, coupon=coupon).count() == 1
    assert coupon_uses_taken(coupon_id=coupon.id) == 1


def test_a_double_click_whose_first_request_is_rate_limited_after_the_second_reserved_keeps_the_use(monkeypatch):
    """The request that took the use is refused by the rate limit (answered
    before checkout.lua's idempotency check) once the other request of the
    same key has reserved its order number: the use stays with that order."""
    from apps.orders.services import checkout as checkout_module
    from apps.stock import services as stock_services

    product = product_with_keys(keys=5)
    coupon = CouponFactory(code="RATED", max_uses=1)
    real_reserve = stock_services.stock_reserve
    first_in, other_done = threading.Lock(), threading.Event()

    def reserve(**call):
        if first_in.acquire(blocking=False):
            assert other_done.wait(30)
            return stock_services.ReserveOutcome(code="rate_limited", retry_after_ms=1000)
        return real_reserve(**call)

    monkeypatch.setattr(checkout_module.stock, "stock_reserve", reserve)
    results, errors = _double_click(product, coupon="rated", other_done=other_done)
    assert errors == ["rate_limited"] and len(results) == 1
    persistence.order_persist_queued()
    assert Order.objects.filter(order_no=results[0].order_no, coupon=coupon).exists()
    assert coupon_uses_taken(coupon_id=coupon.id) == 1
    with pytest.raises(ShopError) as refused:
        order_checkout(sku=product.sku, email="b@x.com", quantity=1, coupon="rated")
    assert refused.value.code == "coupon_used_up"


def _double_click(product, *, coupon: str, other_done: threading.Event) -> tuple[list, list[str]]:
    """Two checkouts of one idempotency key at once (a double click): their
    results and refusal codes. The first to finish sets `other_done`."""
    results, errors = [], []
    start = threading.Barrier(2)

    def click():
        start.wait(30)
        try:
            results.append(
                order_checkout(sku=product.sku, email="a@x.com", quantity=1, coupon=coupon, idempotency_key="k")
            )
        except ShopError as error:
            errors.append(error.code)
        finally:
            connections.close_all()
            if len(results) + len(errors) == 1:  # the first to finish frees the one waiting
                other_done.set()

    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join(60)
    return results, errors
