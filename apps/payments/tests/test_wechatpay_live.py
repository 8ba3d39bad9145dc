"""WeChat Pay end to end with real servers: the app under gunicorn, a Celery
worker, MariaDB and Redis, and a local fake WeChat Pay that POSTs its signed,
encrypted notifications over real HTTP, as the real one does."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.selectors import order_snapshot
from apps.orders.tests.support import product_with_keys
from apps.payments.models import PaymentEvent
from apps.payments.providers import provider_get
from apps.payments.services import payment_query_apply, payment_start
from testing.processes import wait_until

from .fake_wechatpay import FakeWechatPay
from .live import awaiting_order, configure_like, live_shop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def wechat():
    with FakeWechatPay() as fake:
        yield fake


def _wechat_env(wechat) -> dict[str, str]:
    return {"PAYMENT_PROVIDERS": "sandbox,wechatpay", **wechat.settings()}


@pytest.fixture(scope="module")
def servers(django_db_setup, wechat):
    """gunicorn and a Celery worker configured for the fake WeChat Pay."""
    with live_shop(_wechat_env(wechat)) as web:
        yield web


@pytest.fixture
def shop(settings, wechat, servers):
    configure_like(settings, _wechat_env(wechat), site_url=servers.url)
    return servers


def _opened(wechat, order, device="pc"):
    start = payment_start(
        snapshot=order_snapshot(order), method="wechatpay", token=None, device=device, client_ip="127.0.0.1"
    )
    assert start.qr_code or start.pay_url
    return wechat.transactions[order.order_no]


def _delivered(order):
    wait_until(lambda: Order.objects.get(id=order.id).status == "delivered", timeout=60, message="delivery")


def test_pay_then_delivered_then_refunded_by_wechats_refund_notification(shop, wechat):
    product = product_with_keys(keys=3)
    order = awaiting_order(product, "wechat-buyer@example.com", quantity=2)
    trade = _opened(wechat, order)
    assert trade.notify_url == f"{shop.url}/payments/webhook/wechatpay"

    status, _ = wechat.pay(order.order_no)
    assert status == 200

    _delivered(order)
    assert CardKey.objects.filter(order=order, status="sold").count() == 2
    event = PaymentEvent.objects.get(order=order)
    assert (event.provider, event.event_id, event.kind) == ("wechatpay", trade.transaction_id, "paid")

    # Refund after delivery: WeChat answers PROCESSING, then notifies REFUND.SUCCESS.
    provider_get(name="wechatpay").refund_start(
        order_no=order.order_no, event_id=trade.transaction_id, amount=order.amount, currency="CNY"
    )
    wait_until(
        lambda: Order.objects.get(id=order.id).status == Order.Status.REFUNDED,
        timeout=60,
        message="refund notification",
    )
    refund = PaymentEvent.objects.get(order=order, kind="refunded")
    assert refund.event_id == trade.refunds[0]["refund_id"]
    assert CardKey.objects.filter(order=order, status=CardKey.Status.REVOKED).count() == 2


def test_the_same_notification_ten_times_at_once_pays_once(shop, wechat):
    product = product_with_keys(keys=5)
    order = awaiting_order(product, "wechat-ten@example.com", quantity=2)
    trade = _opened(wechat, order, device="mobile")
    wechat.pay(order.order_no, notify=False)
    body, headers = wechat.notification(wechat.transaction_resource(trade))

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: wechat.post(trade.notify_url, body, headers)[0], range(10)))

    assert answers == [200] * 10
    _delivered(order)
    assert PaymentEvent.objects.filter(order=order).count() == 1
    assert CardKey.objects.filter(order=order).count() == 2
    assert CardKey.objects.filter(product=product, status="sold").count() == 2


@pytest.mark.parametrize("case", ["forged_signature", "wrong_amount", "wrong_mchid", "stale_timestamp"])
def test_forged_or_mismatched_notifications_are_refused_and_change_nothing(shop, wechat, case):
    product = product_with_keys(keys=2)
    order = awaiting_order(product, f"wechat-{case}@example.com")
    trade = _opened(wechat, order)
    wechat.pay(order.order_no, notify=False)
    forgery, changes = {
        "forged_signature": ({"signing_key": rsa.generate_private_key(public_exponent=65537, key_size=2048)}, {}),
        "wrong_amount": ({}, {"amount": {"total": 1, "payer_total": 1, "currency": "CNY"}}),
        "wrong_mchid": ({}, {"mchid": "1900000000"}),
        "stale_timestamp": ({"timestamp": int(time.time()) - 3600}, {}),
    }[case]

    status, body = wechat.notify(trade, resource_changes=changes, **forgery)

    assert 400 <= status < 500
    assert '"FAIL"' in body
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert not PaymentEvent.objects.filter(order=order).exists()
    assert not CardKey.objects.filter(order=order).exists()


def test_an_active_query_delivers_a_payment_whose_notification_was_lost(shop, wechat):
    product = product_with_keys(keys=2)
    order = awaiting_order(product, "wechat-lost@example.com")
    trade = _opened(wechat, order)
    wechat.pay(order.order_no, notify=False)  # paid; the notification never arrives

    paid = payment_query_apply(provider_name="wechatpay", order_no=order.order_no)

    assert paid.status == Order.Status.PAID
    _delivered(order)
    assert CardKey.objects.filter(order=order, status="sold").count() == 1
    # The notification arriving late after all changes nothing.
    assert wechat.notify(trade)[0] == 200
    assert PaymentEvent.objects.filter(order=order).count() == 1


def test_close_closes_the_open_transaction(shop, wechat):
    product = product_with_keys(keys=1)
    order = awaiting_order(product, "wechat-close@example.com")
    trade = _opened(wechat, order)

    provider_get(name="wechatpay").payment_close(order_no=order.order_no)

    assert trade.trade_state == "CLOSED"
    assert payment_query_apply(provider_name="wechatpay", order_no=order.order_no) is None
