"""易支付 (epay) end to end with real servers: the app under gunicorn, a Celery
worker, MariaDB and Redis, and a local fake epay gateway that sends its signed
notifications by GET over real HTTP, as the real one does."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.selectors import order_snapshot
from apps.orders.services.payment import order_mark_refunded
from apps.orders.tests.support import product_with_keys
from apps.payments.models import PaymentEvent
from apps.payments.providers import provider_get
from apps.payments.services import payment_query_apply, payment_start
from testing.processes import wait_until

from .fake_epay import FakeEpay
from .live import awaiting_order, configure_like, live_shop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def gateway():
    with FakeEpay() as fake:
        yield fake


def _epay_env(gateway) -> dict[str, str]:
    return {
        "PAYMENT_PROVIDERS": "sandbox,epay",
        "EPAY_GATEWAY_URL": gateway.url,
        "EPAY_PID": gateway.pid,
        "EPAY_KEY": gateway.key,
    }


@pytest.fixture(scope="module")
def servers(django_db_setup, gateway):
    """gunicorn and a Celery worker configured for the fake gateway."""
    with live_shop(_epay_env(gateway)) as web:
        yield web


@pytest.fixture
def shop(settings, gateway, servers):
    configure_like(settings, _epay_env(gateway), site_url=servers.url)
    return servers


def _opened(gateway, order, method="epay.alipay"):
    start = payment_start(snapshot=order_snapshot(order), method=method, token=None, device="pc", client_ip="127.0.0.1")
    assert gateway.open(start.pay_url)[0] == 200
    return gateway.trade_for(order.order_no)


def _delivered(order):
    wait_until(lambda: Order.objects.get(id=order.id).status == "delivered", timeout=60, message="delivery")


def test_pay_with_epay_then_delivered_then_refunded_through_the_gateway(shop, gateway):
    product = product_with_keys(keys=3)
    order = awaiting_order(product, "epay-buyer@example.com", quantity=2)
    trade = _opened(gateway, order)
    assert trade.notify_url == f"{shop.url}/payments/webhook/epay"

    # The buyer pays on the gateway's page; the gateway notifies the shop by GET.
    assert gateway.pay(trade.trade_no) == (200, "success")

    _delivered(order)
    assert CardKey.objects.filter(order=order, status="sold").count() == 2
    event = PaymentEvent.objects.get(order=order)
    assert (event.provider, event.event_id, event.kind) == ("epay", trade.trade_no, "paid")

    # Refund after delivery: epay refunds synchronously and sends nothing; the
    # shop records the refund through the same path a refund notification takes.
    refunded = provider_get(name="epay").refund_start(
        order_no=order.order_no, event_id=trade.trade_no, amount=order.amount, currency="CNY"
    )
    order_mark_refunded(
        order_no=refunded.order_no,
        provider="epay",
        event_id=refunded.event_id,
        amount=refunded.amount,
        currency=refunded.currency,
    )
    assert gateway.trades[trade.trade_no].status == 2
    assert gateway.trades[trade.trade_no].refunds == [str(order.amount)]
    assert PaymentEvent.objects.filter(order=order, kind="refunded", event_id=f"refund-{trade.trade_no}").count() == 1
    # A refund after delivery ends the order refunded, its keys revoked.
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert CardKey.objects.filter(order=order, status=CardKey.Status.REVOKED).count() == 2


def test_the_same_notification_ten_times_at_once_pays_once(shop, gateway):
    product = product_with_keys(keys=5)
    order = awaiting_order(product, "ten@example.com", quantity=2)
    trade = _opened(gateway, order)
    gateway.pay(trade.trade_no, notify=False)

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: gateway.notify(trade), range(10)))

    assert answers == [(200, "success")] * 10
    _delivered(order)
    assert PaymentEvent.objects.filter(order=order).count() == 1
    assert CardKey.objects.filter(order=order).count() == 2
    assert CardKey.objects.filter(product=product, status="sold").count() == 2


@pytest.mark.parametrize(
    ("changes", "answer"),
    [
        ({"sign": "0" * 32}, (400, "fail: invalid_signature")),
        ({"money": "0.01"}, (400, "fail: payment_mismatch")),
        ({"pid": "4242"}, (400, "fail: wrong_merchant")),
    ],
)
def test_forged_or_mismatched_notifications_are_refused_and_change_nothing(shop, gateway, changes, answer):
    product = product_with_keys(keys=2)
    order = awaiting_order(product, "forged@example.com")
    trade = _opened(gateway, order)

    assert gateway.notify(trade, **changes) == answer

    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert not PaymentEvent.objects.filter(order=order).exists()
    assert not CardKey.objects.filter(order=order).exists()


def test_an_active_query_delivers_a_payment_whose_notification_was_lost(shop, gateway):
    product = product_with_keys(keys=2)
    order = awaiting_order(product, "lost@example.com")
    trade = _opened(gateway, order, method="epay.wxpay")
    gateway.pay(trade.trade_no, notify=False)  # paid; the notification never arrives

    paid = payment_query_apply(provider_name="epay", order_no=order.order_no)

    assert paid.status == Order.Status.PAID
    _delivered(order)
    assert CardKey.objects.filter(order=order, status="sold").count() == 1
    # The notification arriving late after all changes nothing.
    assert gateway.notify(trade) == (200, "success")
    assert PaymentEvent.objects.filter(order=order).count() == 1
