"""Alipay end to end with real servers: the app under gunicorn, a Celery
worker, MariaDB and Redis, and a local fake Alipay gateway that checks the
shop's RSA2 signatures and POSTs its own signed form notifications over real
HTTP, as Alipay does."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.selectors import order_snapshot
from apps.orders.services.cancel import order_cancel
from apps.orders.services.payment import order_refund_start
from apps.orders.tests.support import product_with_keys
from apps.payments.models import PaymentEvent
from apps.payments.refunds import payment_refund_request
from apps.payments.services import payment_query_apply, payment_start
from testing.processes import wait_until

from .fake_alipay import FakeAlipay
from .live import awaiting_order, configure_like, live_shop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def gateway():
    with FakeAlipay() as fake:
        yield fake


def _alipay_env(gateway) -> dict:
    return {
        "PAYMENT_PROVIDERS": "sandbox,alipay",
        "ALIPAY_APP_ID": gateway.app_id,
        "ALIPAY_APP_PRIVATE_KEY": gateway.app_private_key,
        "ALIPAY_PUBLIC_KEY": gateway.alipay_public_key,
        "ALIPAY_GATEWAY_URL": gateway.url,
    }


@pytest.fixture(scope="module")
def servers(django_db_setup, gateway):
    """gunicorn and a Celery worker configured for the fake gateway."""
    with live_shop(_alipay_env(gateway)) as web:
        yield web


@pytest.fixture
def shop(settings, gateway, servers):
    configure_like(settings, _alipay_env(gateway), site_url=servers.url)
    return servers


def _opened(gateway, order, device="pc"):
    start = payment_start(
        snapshot=order_snapshot(order), method="alipay", token=None, device=device, client_ip="127.0.0.1"
    )
    status, page = gateway.open(start.pay_url)
    assert status == 200, page
    return gateway.trades[order.order_no]


def _delivered(order):
    wait_until(lambda: Order.objects.get(id=order.id).status == "delivered", timeout=60, message="delivery")


def test_pay_with_alipay_then_delivered_then_refunded_once(shop, gateway):
    product = product_with_keys(keys=3)
    order = awaiting_order(product, "alipay-buyer@example.com", quantity=2)
    trade = _opened(gateway, order)
    assert trade.notify_url == f"{shop.url}/payments/webhook/alipay"
    assert trade.method == "alipay.trade.page.pay"

    # The buyer pays at Alipay; Alipay POSTs its signed form notification.
    assert gateway.pay(order.order_no) == (200, "success")

    _delivered(order)
    assert CardKey.objects.filter(order=order, status="sold").count() == 2
    event = PaymentEvent.objects.get(order=order)
    assert (event.provider, event.event_id, event.kind) == ("alipay", trade.trade_no, "paid")

    # The operator refunds the delivered order; the worker asks Alipay, which
    # refunds synchronously, and the shop records it at once.
    assert order_refund_start(order_ids=[order.id], reason="buyer asked") == 1
    wait_until(lambda: Order.objects.get(id=order.id).status == "refunded", timeout=60, message="refund")
    assert trade.refunds == {f"refund-{trade.trade_no}": str(order.amount)}
    assert payment_refund_request(order_id=order.id) is False  # asked again: nothing more
    refund = PaymentEvent.objects.get(order=order, kind="refunded")
    assert refund.event_id == f"refund-{trade.trade_no}"
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert CardKey.objects.filter(order=order, status=CardKey.Status.REVOKED).count() == 2

    # Alipay's own notification of that refund arrives too: the same event id, recorded once.
    answer = gateway.post(trade.notify_url, gateway.refund_notification(trade, f"refund-{trade.trade_no}"))
    assert answer == (200, "success")
    assert PaymentEvent.objects.filter(order=order, kind="refunded").count() == 1
    assert len(trade.refunds) == 1


def test_the_same_notification_ten_times_at_once_pays_once(shop, gateway):
    product = product_with_keys(keys=5)
    order = awaiting_order(product, "ten-alipay@example.com", quantity=2)
    trade = _opened(gateway, order, device="mobile")
    assert trade.method == "alipay.trade.wap.pay"
    gateway.pay(order.order_no, notify=False)
    notification = gateway.notification(trade)

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: gateway.post(trade.notify_url, notification), range(10)))

    assert answers == [(200, "success")] * 10
    _delivered(order)
    assert PaymentEvent.objects.filter(order=order).count() == 1
    assert CardKey.objects.filter(order=order).count() == 2
    assert CardKey.objects.filter(product=product, status="sold").count() == 2


@pytest.mark.parametrize(
    ("changes", "answer"),
    [
        ({"sign": "A" * 344}, (400, "fail: invalid_signature")),
        ({"total_amount": "0.01"}, (400, "fail: payment_mismatch")),
        ({"app_id": "2021000999999999"}, (400, "fail: wrong_merchant")),
        ({"notify_time": "2020-01-01 00:00:00"}, (400, "fail: stale_timestamp")),
    ],
)
def test_forged_or_mismatched_notifications_are_refused_and_change_nothing(shop, gateway, changes, answer):
    product = product_with_keys(keys=2)
    order = awaiting_order(product, "forged-alipay@example.com")
    trade = _opened(gateway, order)
    gateway.pay(order.order_no, notify=False)

    assert gateway.notify(trade, **changes) == answer

    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert not PaymentEvent.objects.filter(order=order).exists()
    assert not CardKey.objects.filter(order=order).exists()


def test_an_active_query_delivers_a_payment_whose_notification_was_lost(shop, gateway):
    product = product_with_keys(keys=2)
    order = awaiting_order(product, "lost-alipay@example.com")
    trade = _opened(gateway, order)
    assert payment_query_apply(provider_name="alipay", order_no=order.order_no) is None  # not paid yet
    gateway.pay(order.order_no, notify=False)  # paid; the notification never arrives

    paid = payment_query_apply(provider_name="alipay", order_no=order.order_no)

    assert paid.status == Order.Status.PAID
    _delivered(order)
    assert CardKey.objects.filter(order=order, status="sold").count() == 1
    # The notification arriving late after all changes nothing.
    assert gateway.notify(trade) == (200, "success")
    assert PaymentEvent.objects.filter(order=order).count() == 1


def test_a_cancelled_order_has_its_alipay_trade_closed(shop, gateway):
    product = product_with_keys(keys=1)
    order = awaiting_order(product, "cancel-alipay@example.com")
    trade = _opened(gateway, order)

    order_cancel(order_no=order.order_no)

    # The worker closes the trade at Alipay, so the buyer can no longer pay it there.
    wait_until(lambda: trade.status == "TRADE_CLOSED", timeout=60, message="alipay.trade.close")
    assert "alipay.trade.close" in [request["method"] for request in gateway.requests]
