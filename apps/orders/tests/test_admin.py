import time
from decimal import Decimal
from unittest import mock

import pytest

from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.services import checkout, payment, persistence
from apps.orders.tests.support import product_with_keys
from apps.payments.sandbox_server import notification_sign, sandbox_notification_deliver_task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def needs_attention_order(celery_eager):
    product = product_with_keys(keys=1)
    result = checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    persistence.order_persist_queued()
    from apps.cardkeys.models import CardKey

    CardKey.objects.filter(product=product).update(status="void")
    order = Order.objects.get(order_no=result.order_no)
    payment.order_mark_paid(
        order_no=order.order_no, provider="sandbox", event_id="e", amount=order.amount, currency="CNY"
    )
    order.refresh_from_db()
    assert order.status == "needs_attention"
    return order


def test_needs_attention_is_visible_with_its_reason(admin_client, needs_attention_order):
    listing = admin_client.get("/admin/orders/order/?status__exact=needs_attention")
    assert needs_attention_order.order_no in listing.content.decode()
    page = admin_client.get(f"/admin/orders/order/{needs_attention_order.id}/change/")
    assert "keys ran short" in page.content.decode()
    assert needs_attention_order.access_token_hash not in page.content.decode()


def test_retry_after_new_keys_delivers(admin_client, needs_attention_order):
    import io

    from apps.cardkeys.services import cardkeys_import

    cardkeys_import(product=needs_attention_order.product, source=io.BytesIO(b"MORE-KEY-1\n"), file_name="more.txt")
    response = admin_client.post(
        "/admin/orders/order/",
        {"action": "retry_fulfilment", "_selected_action": [needs_attention_order.id]},
        follow=True,
    )
    assert response.status_code == 200
    needs_attention_order.refresh_from_db()
    assert needs_attention_order.status == "delivered"


def test_refund_action(admin_client, needs_attention_order, monkeypatch):
    refunds = []
    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: refunds.append(order_id))
    admin_client.post(
        "/admin/orders/order/",
        {"action": "start_refund", "_selected_action": [needs_attention_order.id], "confirm": "yes"},
    )
    needs_attention_order.refresh_from_db()
    assert needs_attention_order.status == "refund_pending" and refunds == [needs_attention_order.id]


def test_retry_without_new_stock_keeps_the_order_needing_attention(admin_client, needs_attention_order):
    admin_client.post(
        "/admin/orders/order/", {"action": "retry_fulfilment", "_selected_action": [needs_attention_order.id]}
    )
    needs_attention_order.refresh_from_db()
    assert needs_attention_order.status == "needs_attention"
    assert "still not enough stock" in needs_attention_order.attention_reason


def test_the_kill_switch_in_the_admin_pauses_checkout_at_once(admin_client):
    from apps.orders.exceptions import SalePaused

    product = product_with_keys(keys=3)
    admin_client.post("/admin/catalog/product/", {"action": "pause_sale", "_selected_action": [product.id]})
    with pytest.raises(SalePaused):
        checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    assert "Sale paused" in admin_client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    admin_client.post("/admin/catalog/product/", {"action": "resume_sale", "_selected_action": [product.id]})
    assert checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=1).status == "queued"


def test_the_product_form_shows_every_rule_against_scalpers(admin_client):
    product = product_with_keys(keys=1)
    html = admin_client.get(f"/admin/catalog/product/{product.id}/change/").content.decode()
    for field in (
        "sale_paused",
        "min_page_seconds",
        "max_unpaid_per_buyer",
        "limit_by_account",
        "limit_by_device",
        "limit_by_ip",
    ):
        assert f'name="{field}"' in html


def buyer_count(order) -> int:
    from apps.orders.identity import buyer_identity
    from apps.stock.redis import stock_redis
    from apps.stock.redis_keys import buyers_key

    return int(stock_redis().hget(buyers_key(order.product_id), "e:" + buyer_identity(email=order.buyer_email)) or 0)


def test_a_retried_order_counts_its_buyer_once(admin_client, needs_attention_order):
    """The order kept its buyer's share while it needed attention; the retry
    takes stock again but must not count the buyer a second time."""
    import io

    from apps.cardkeys.services import cardkeys_import

    assert buyer_count(needs_attention_order) == 1
    cardkeys_import(product=needs_attention_order.product, source=io.BytesIO(b"MORE-KEY-1\n"), file_name="more.txt")
    admin_client.post(
        "/admin/orders/order/", {"action": "retry_fulfilment", "_selected_action": [needs_attention_order.id]}
    )
    needs_attention_order.refresh_from_db()
    assert needs_attention_order.status == "delivered"
    assert buyer_count(needs_attention_order) == 1


def test_a_refunded_buyer_may_buy_again(admin_client, needs_attention_order, monkeypatch):
    """A refund ends the order's claim on the buyer's limit, also when its
    reservation already ended at the shortfall."""
    import io

    from apps.cardkeys.services import cardkeys_import

    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: None)
    admin_client.post(
        "/admin/orders/order/",
        {"action": "start_refund", "_selected_action": [needs_attention_order.id], "confirm": "yes"},
    )
    assert buyer_count(needs_attention_order) == 0
    cardkeys_import(product=needs_attention_order.product, source=io.BytesIO(b"MORE-KEY-2\n"), file_name="more.txt")
    again = checkout.order_checkout(sku=needs_attention_order.product.sku, email="a@x.com", quantity=1)
    assert again.order_no != needs_attention_order.order_no


def test_a_refund_that_could_not_reach_redis_is_settled_by_reconcile(
    admin_client, needs_attention_order, monkeypatch, settings
):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from apps.orders.services.reconcile import reconcile_run
    from apps.stock import services as gate

    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: None)
    real_uncount = gate.stock_buyers_uncount

    def redis_blip(**kwargs):
        raise RedisConnectionError("connection reset")

    monkeypatch.setattr(gate, "stock_buyers_uncount", redis_blip)
    admin_client.post(
        "/admin/orders/order/",
        {"action": "start_refund", "_selected_action": [needs_attention_order.id], "confirm": "yes"},
    )
    assert buyer_count(needs_attention_order) == 1  # the share is still counted
    monkeypatch.setattr(gate, "stock_buyers_uncount", real_uncount)
    settings.FULFIL_REDRIVE_AFTER_SECONDS = 3600
    report = reconcile_run(drift_settle_seconds=0)
    assert needs_attention_order.order_no in report.released
    assert buyer_count(needs_attention_order) == 0
    assert needs_attention_order.order_no not in reconcile_run(drift_settle_seconds=0).released  # once


def test_a_gate_rebuilt_while_an_order_needs_attention_still_settles_it_once(
    admin_client, needs_attention_order, monkeypatch
):
    """A rebuild from the database counts the order's share and remembers it
    as held, so a later refund drops it exactly once."""
    from apps.orders.tests.support import redis_lose_product
    from apps.stock.warmup import stock_warm

    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: None)
    redis_lose_product(needs_attention_order.product)
    assert stock_warm(product=needs_attention_order.product)[0] is True
    assert buyer_count(needs_attention_order) == 1
    admin_client.post(
        "/admin/orders/order/",
        {"action": "start_refund", "_selected_action": [needs_attention_order.id], "confirm": "yes"},
    )
    assert buyer_count(needs_attention_order) == 0
    from apps.stock.services import stock_buyers_uncount

    assert (
        stock_buyers_uncount(product_id=needs_attention_order.product_id, order_no=needs_attention_order.order_no)
        is False
    )


# --- refunds of delivered orders, with a confirmation page


@pytest.fixture
def delivered_order(celery_eager):
    product = product_with_keys(keys=2)
    result = checkout.order_checkout(sku=product.sku, email="d@x.com", quantity=1)
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=result.order_no)
    payment.order_mark_paid(
        order_no=order.order_no, provider="sandbox", event_id="paid-1", amount=order.amount, currency="CNY"
    )
    order.refresh_from_db()
    assert order.status == "delivered"
    return order


def test_refund_asks_for_confirmation_with_the_orders_and_amounts(admin_client, delivered_order, monkeypatch):
    refunds = []
    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: refunds.append(order_id))

    page = admin_client.post(
        "/admin/orders/order/", {"action": "start_refund", "_selected_action": [delivered_order.id]}
    )

    assert page.status_code == 200
    text = page.content.decode()
    assert delivered_order.order_no in text and "9.90" in text and 'name="confirm" value="yes"' in text
    delivered_order.refresh_from_db()
    assert delivered_order.status == "delivered" and refunds == []


def test_a_confirmed_refund_of_a_delivered_order_revokes_its_keys_on_the_providers_notice(
    admin_client, client, delivered_order, django_capture_on_commit_callbacks
):
    """Through the sandbox: its refund notification, signed, to the real webhook."""
    with (
        mock.patch.object(sandbox_notification_deliver_task, "delay") as sent,
        django_capture_on_commit_callbacks(execute=True),
    ):
        admin_client.post(
            "/admin/orders/order/",
            {"action": "start_refund", "_selected_action": [delivered_order.id], "confirm": "yes"},
            follow=True,
        )
    delivered_order.refresh_from_db()
    assert delivered_order.status == "refund_pending"
    assert CardKey.objects.get(order=delivered_order).status == "sold"  # until the provider confirms
    fields = sent.call_args.kwargs["fields"]
    assert (fields["kind"], fields["payment_event_id"], fields["amount"]) == ("refunded", "paid-1", "9.90")

    body, headers = notification_sign({**fields, "timestamp": int(time.time())})
    response = client.post(
        "/payments/webhook/sandbox",
        data=body,
        content_type="application/json",
        HTTP_X_SANDBOX_SIGNATURE=headers["X-Sandbox-Signature"],
    )

    assert response.status_code == 200
    delivered_order.refresh_from_db()
    assert delivered_order.status == "refunded"
    assert CardKey.objects.get(order=delivered_order).status == "revoked"
    listing = admin_client.get("/admin/orders/order/?status__exact=refunded").content.decode()
    assert delivered_order.order_no in listing
    page = admin_client.get(f"/admin/orders/order/{delivered_order.id}/change/").content.decode()
    secret = CardKey.objects.get(order=delivered_order).secret
    assert "(已撤销)" in page and secret not in page  # "(revoked)", in the admin's zh-hans
    keys = admin_client.get("/admin/cardkeys/cardkey/?status__exact=revoked").content.decode()
    assert delivered_order.order_no in keys and secret not in keys


def test_overpaid_orders_have_their_own_filter(admin_client, delivered_order, monkeypatch):
    monkeypatch.setattr("apps.payments.tasks.refund_payment_event_task.delay", lambda event_pk: None)
    payment.order_mark_paid(
        order_no=delivered_order.order_no, provider="sandbox", event_id="paid-2", amount=Decimal("9.90"), currency="CNY"
    )
    listing = admin_client.get("/admin/orders/order/?overpaid__exact=1").content.decode()
    assert delivered_order.order_no in listing
    assert delivered_order.order_no not in admin_client.get("/admin/orders/order/?overpaid__exact=0").content.decode()
