"""Products not sold from the key pool: a reusable key every buyer gets, and
manual delivery by the merchant. Their stock is a number; the gate is built
from it as from available keys (warm-up, rebuild, reconcile), and a delivery
takes from it in the transaction that marks the order delivered.

Real MariaDB, Redis and threads; mails through the locmem backend."""

import io
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone, translation

from apps.cardkeys.exceptions import ImportRefused
from apps.cardkeys.models import CardKey
from apps.cardkeys.services import cardkeys_import
from apps.catalog.models import Product
from apps.catalog.services import product_stock_set
from apps.core.errors import InvalidInput
from apps.orders.exceptions import OrderNotAwaitingManualDelivery
from apps.orders.models import Order
from apps.orders.selectors import order_delivery_reveal, order_snapshot
from apps.orders.services import fulfilment, payment, persistence
from apps.orders.services.manual_delivery import order_deliver_manually
from apps.orders.services.reconcile import reconcile_run
from apps.orders.tests.delivery_support import SHARED_KEY, product_manual, product_reusable, stock_number
from apps.orders.tests.support import checkout, paid_orders, pay, product_with_keys, redis_lose_product
from apps.orders.tests.test_api import create
from apps.stock.selectors import stock_remaining
from apps.stock.warmup import stock_gate_rebuild, stock_warm

pytestmark = pytest.mark.django_db(transaction=True)


def _run_at_once(targets):
    """Run each callable in its own thread (own database connection), all
    released together; returns (results, errors)."""
    barrier = threading.Barrier(len(targets))
    results, errors = [], []

    def run(target):
        try:
            barrier.wait(20)
            results.append(target())
        except Exception as exc:  # shown by the callers' assertions
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    return results, errors


# --- The gate counts a stock number like available keys


@pytest.mark.parametrize("make", [product_reusable, product_manual], ids=["reusable", "manual"])
def test_warm_up_builds_the_gate_from_the_stock_number(make):
    product = make(stock=10, warm=False)
    assert stock_warm(product=product) == (True, 10)
    checkout(product, email="a@x.com", quantity=3)
    assert stock_remaining(product_id=product.id) == 7


@pytest.mark.parametrize("make", [product_reusable, product_manual], ids=["reusable", "manual"])
def test_a_rebuild_after_redis_loss_is_exact_with_orders_in_every_state(make, published):
    product = make(stock=20, per_buyer_limit=5)
    delivered = paid_orders(product, 2, quantity=2)  # 4 units, paid
    checkout(product, email="unpaid@x.com", quantity=3)  # 3 units, awaiting payment
    persistence.order_persist_queued()
    if product.delivery_kind == Product.Delivery.MANUAL:
        order_deliver_manually(order_id=delivered[0].id, content="done", by_user=None)
    else:
        fulfilment.order_fulfil(order_id=delivered[0].id, batch_size=1)
    # One order delivered (2 taken from the number), one paid (2 held), one unpaid (3 held).
    assert stock_number(product) == 18
    assert stock_remaining(product_id=product.id) == 13

    redis_lose_product(product)
    assert stock_remaining(product_id=product.id) is None
    assert stock_warm(product=product) == (True, 13)
    assert reconcile_run(drift_settle_seconds=0).drift_fixed == {}
    assert stock_gate_rebuild(product=product) == (True, 13)


def test_reconcile_repairs_drift_against_the_stock_number():
    product = product_manual(stock=8)
    Product.objects.filter(id=product.id).update(stock_quantity=5)  # a write that bypassed the service
    report = reconcile_run(drift_settle_seconds=0)
    assert report.drift_fixed == {product.sku: -3}
    assert stock_remaining(product_id=product.id) == 5


def test_setting_the_stock_number_moves_the_gate_by_the_difference_and_refuses_what_orders_hold():
    product = product_manual(stock=5)
    checkout(product, email="a@x.com", quantity=2)
    persistence.order_persist_queued()
    assert stock_remaining(product_id=product.id) == 3

    assert product_stock_set(product_id=product.id, quantity=10) == 5
    assert stock_remaining(product_id=product.id) == 8
    assert product_stock_set(product_id=product.id, quantity=2) == -8
    assert stock_remaining(product_id=product.id) == 0
    with pytest.raises(InvalidInput) as refused:
        product_stock_set(product_id=product.id, quantity=1)
    assert "2" in str(refused.value.extra["fields"]["stock_quantity"][0])
    assert stock_number(product) == 2

    pool = product_with_keys(keys=3)
    with pytest.raises(InvalidInput):
        product_stock_set(product_id=pool.id, quantity=50)
    redis_lose_product(product)
    assert stock_warm(product=product) == (True, 0)


@pytest.mark.parametrize("make", [product_reusable, product_manual], ids=["reusable", "manual"])
def test_key_imports_are_refused_for_products_without_a_pool(make):
    product = make(stock=1)
    with pytest.raises(ImportRefused, match="不从卡密库发货"):  # LANGUAGE_CODE zh-hans: "not sold from a key pool"
        cardkeys_import(product=product, source=io.BytesIO(b"K-1\nK-2\n"), file_name="keys.txt")
    assert CardKey.objects.filter(product=product).count() == 0
    assert stock_remaining(product_id=product.id) == 1


# --- Reusable keys


def test_fifty_concurrent_paid_orders_all_get_the_one_key_and_the_stock_number_ends_exact(published):
    """50 fulfilments at once, each its own transaction on its own connection,
    all taking from the one product row: every order delivered once with the
    same key, no key row touched, the number down by exactly 50."""
    product = product_reusable(stock=60, per_buyer_limit=1)
    orders = paid_orders(product, 50)
    assert {o.status for o in orders} == {Order.Status.PAID}

    def deliver(order_id):
        return lambda: fulfilment.order_fulfil(order_id=order_id, batch_size=1)

    reports, errors = _run_at_once([deliver(o.id) for o in orders])

    assert errors == []
    delivered = sorted(no for r in reports for no in r.delivered)
    assert delivered == sorted(o.order_no for o in orders)  # each once
    for order in Order.objects.filter(product=product).select_related("product"):
        assert order.status == Order.Status.DELIVERED
        assert order_delivery_reveal(order).keys == [SHARED_KEY]
        assert order_snapshot(order)["keys"] == [SHARED_KEY]
    assert stock_number(product) == 10
    assert CardKey.objects.count() == 0
    assert stock_remaining(product_id=product.id) == 10
    assert reconcile_run(drift_settle_seconds=0).drift_fixed == {}
    redis_lose_product(product)
    assert stock_warm(product=product) == (True, 10)


def test_concurrent_fulfilments_never_deliver_more_than_the_number_left(published):
    """The merchant lowered the number below what paid orders hold (written
    past the service, as a mistake would): 40 fulfilments at once deliver
    exactly what is left, the rest need attention, and the number ends at 0."""
    product = product_reusable(stock=40, per_buyer_limit=1)
    orders = paid_orders(product, 40)
    Product.objects.filter(id=product.id).update(stock_quantity=25)

    def deliver(order_id):
        return lambda: fulfilment.order_fulfil(order_id=order_id, batch_size=1)

    reports, errors = _run_at_once([deliver(o.id) for o in orders])

    assert errors == []
    assert sum(len(r.delivered) for r in reports) == 25 and sum(len(r.short) for r in reports) == 15
    statuses = list(Order.objects.filter(product=product).values_list("status", flat=True))
    assert statuses.count(Order.Status.DELIVERED) == 25 and statuses.count(Order.Status.NEEDS_ATTENTION) == 15
    assert stock_number(product) == 0


def test_a_reusable_key_order_is_delivered_once_however_often_fulfilment_runs(published):
    product = product_reusable(stock=5)
    (order,) = paid_orders(product, 1, quantity=2)
    first = fulfilment.order_fulfil(order_id=order.id)
    again = fulfilment.order_fulfil(order_id=order.id)
    assert first.delivered == [order.order_no] and again.delivered == []
    assert stock_number(product) == 3


def test_a_reusable_key_order_the_number_no_longer_covers_needs_attention(published):
    product = product_reusable(stock=5)
    (order,) = paid_orders(product, 1, quantity=2)
    Product.objects.filter(id=product.id).update(stock_quantity=1)
    report = fulfilment.order_fulfil(order_id=order.id)
    order.refresh_from_db()
    assert report.short == [order.order_no] and order.status == Order.Status.NEEDS_ATTENTION
    assert "stock ran short" in order.attention_reason
    assert stock_number(product) == 1 and order.reusable_key_encrypted == ""


def test_a_refund_after_delivery_ends_the_order_refunded_and_the_shared_key_stays(published):
    product = product_reusable(stock=5)
    refunded, kept = paid_orders(product, 2)
    fulfilment.order_fulfil(order_id=None)
    payment.order_mark_refunded(
        order_no=refunded.order_no, provider="sandbox", event_id="r-1", amount=refunded.amount, currency="CNY"
    )
    refunded = Order.objects.select_related("product").get(id=refunded.id)
    assert refunded.status == Order.Status.REFUNDED
    assert "keys" not in order_snapshot(refunded)  # nothing shown once refunded
    kept = Order.objects.select_related("product").get(id=kept.id)
    assert order_snapshot(kept)["keys"] == [SHARED_KEY]
    assert stock_number(product) == 3  # delivered units are not returned, like revoked keys
    assert stock_remaining(product_id=product.id) == 3
    # The next buyer still gets the same key.
    late = paid_orders(product, 1)[-1]  # all the product's orders, the newest last
    fulfilment.order_fulfil(order_id=late.id)
    late = Order.objects.select_related("product").get(id=late.id)
    assert order_snapshot(late)["keys"] == [SHARED_KEY]


def test_the_reusable_key_mail_carries_the_key_byte_for_byte(celery_eager):
    product = product_reusable(stock=5)
    (order,) = paid_orders(product, 1)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    (message,) = mail.outbox
    assert SHARED_KEY in message.body
    assert order.order_no in message.subject


# --- Manual delivery


def test_paid_manual_orders_wait_for_the_merchant_and_are_never_redriven(published, settings):
    product = product_manual(stock=5)
    pool = product_with_keys(keys=2)
    manual_order, pool_order = paid_orders(product, 1)[0], paid_orders(pool, 1)[0]
    Order.objects.update(paid_at=timezone.now() - timedelta(hours=1))

    report = fulfilment.fulfilment_run(order_id=manual_order.id, seconds=1)

    assert report.delivered == [pool_order.order_no]
    manual_order.refresh_from_db()
    assert manual_order.status == Order.Status.PAID
    assert fulfilment.fulfilment_redrive_stuck() == []
    assert stock_number(product) == 5
    run = reconcile_run(drift_settle_seconds=0)
    assert run.redriven == [] and run.manual_overdue == []  # within MANUAL_DELIVERY_SLA_HOURS


def test_a_manual_order_past_the_sla_is_reported_overdue(published, settings):
    settings.MANUAL_DELIVERY_SLA_HOURS = 2
    product = product_manual(stock=5, per_buyer_limit=1)
    late, fresh = paid_orders(product, 2)
    Order.objects.filter(id=late.id).update(paid_at=timezone.now() - timedelta(hours=3))
    report = reconcile_run(drift_settle_seconds=0)
    assert report.manual_overdue == [late.order_no]
    with translation.override("en"):  # the report speaks the shop's language (zh-hans)
        assert f"manual deliveries overdue: 1 {late.order_no}" in report.lines()


def test_two_concurrent_manual_deliveries_deliver_once_and_mail_once(celery_eager):
    product = product_manual(stock=3)
    (order,) = paid_orders(product, 1, quantity=2)
    assert Order.objects.get(id=order.id).status == Order.Status.PAID  # fulfilment left it alone

    def deliver(text):
        return lambda: order_deliver_manually(order_id=order.id, content=text, by_user=None)

    results, errors = _run_at_once([deliver("Topped up 100 credits\nto account 42"), deliver("second try")])

    assert errors == []
    assert sorted(r.delivered_now for r in results) == [False, True]
    order = Order.objects.select_related("product").get(id=order.id)
    assert order.status == Order.Status.DELIVERED and order.keys_emailed_at is not None
    # Whichever call took the row lock first delivered; the other changed nothing.
    content = order_delivery_reveal(order).content
    assert content in ("Topped up 100 credits\nto account 42", "second try")
    assert order_snapshot(order)["delivered_content"] == content and order_snapshot(order)["keys"] == []
    (message,) = mail.outbox
    assert content in message.body and order.order_no in message.subject
    assert stock_number(product) == 1  # taken once
    assert stock_remaining(product_id=product.id) == 1
    assert CardKey.objects.count() == 0
    assert reconcile_run(drift_settle_seconds=0).drift_fixed == {}


def test_manual_delivery_refuses_what_is_not_a_paid_manual_order(published):
    manual = product_manual(stock=3)
    checkout(manual, email="unpaid@x.com")
    persistence.order_persist_queued()
    unpaid = Order.objects.get(product=manual)
    with pytest.raises(OrderNotAwaitingManualDelivery):
        order_deliver_manually(order_id=unpaid.id, content="x", by_user=None)
    pool = product_with_keys(keys=2)
    (pool_order,) = paid_orders(pool, 1)
    with pytest.raises(OrderNotAwaitingManualDelivery):
        order_deliver_manually(order_id=pool_order.id, content="x", by_user=None)
    pay(unpaid.order_no, event_id="e-unpaid")
    with pytest.raises(InvalidInput):
        order_deliver_manually(order_id=unpaid.id, content="   ", by_user=None)
    assert Order.objects.get(id=unpaid.id).status == Order.Status.PAID
    assert stock_number(manual) == 3


# --- What the buyer's API says


def test_the_api_shows_a_manual_delivery_and_a_reusable_key_to_the_token_holder_only(client, celery_eager):
    manual, reusable = product_manual(stock=2), product_reusable(stock=2)
    bodies = {p.delivery_kind: create(client, {"sku": p.sku, "email": "a@x.com"}).json() for p in (manual, reusable)}
    persistence.order_persist_queued()
    for body in bodies.values():
        pay(body["order_no"], event_id=f"e-{body['order_no']}")

    def shown(kind, token=None):
        body = bodies[kind]
        return client.get(body["status_url"], headers={"X-Order-Token": token or body["access_token"]})

    waiting = shown("manual").json()
    assert (waiting["status"], waiting["delivery"]) == ("paid", "manual") and "delivered_content" not in waiting
    order = Order.objects.get(order_no=bodies["manual"]["order_no"])
    order_deliver_manually(order_id=order.id, content="Code: 7781-AX", by_user=None)

    delivered = shown("manual").json()
    assert delivered["status"] == "delivered"
    assert (delivered["keys"], delivered["delivered_content"]) == ([], "Code: 7781-AX")
    key = shown("reusable_key").json()
    assert (key["status"], key["delivery"], key["keys"]) == ("delivered", "reusable_key", [SHARED_KEY])
    stranger = shown("manual", token="x" + bodies["manual"]["access_token"])
    assert stranger.status_code == 404 and "delivered_content" not in stranger.json()


def test_the_page_of_a_manual_delivery_speaks_of_what_was_delivered_not_of_keys(client, celery_eager):
    manual = product_manual(stock=2)
    body = create(client, {"sku": manual.sku, "email": "a@x.com"}).json()
    persistence.order_persist_queued()
    pay(body["order_no"], event_id=f"e-{body['order_no']}")
    order = Order.objects.get(order_no=body["order_no"])
    order_deliver_manually(order_id=order.id, content="Code: 7781-AX", by_user=None)

    page = client.get(f"{body['order_url']}?token={body['access_token']}", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Code: 7781-AX" in page
    # No keys were sent: the mail carries what the merchant delivered.
    assert "We also sent them to your email" not in page
    assert "We also sent this to your email. Keep this page's link to see it again." in page
