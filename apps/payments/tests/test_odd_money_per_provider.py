"""Odd money per real provider (issue 11, Proof): a commit failure makes the
provider retry; a refund overtaking the paid notification; a payment after
the buyer cancelled. Each against its local fake speaking the provider's
protocol over real HTTP to the shop's webhook, MariaDB and Redis; the shop
runs in-process (Django's live server thread) with Celery tasks eager, so
one can be made to fail at commit."""

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from django.db import OperationalError

from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.selectors import order_snapshot
from apps.orders.services import payment as order_payment
from apps.orders.services import persistence
from apps.orders.services.cancel import order_cancel
from apps.orders.tests.support import checkout, product_with_keys
from apps.payments.models import PaymentEvent
from apps.payments.providers import provider_get
from apps.payments.services import payment_start
from testing.processes import wait_until

from .fake_alipay import FakeAlipay
from .fake_epay import FakeEpay
from .fake_stripe import FakeStripe, _new_id
from .fake_wechatpay import FakeWechatPay

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

PROVIDERS = ["epay", "stripe", "alipay", "wechatpay"]


@dataclass
class Paid:
    """A payment the buyer made at the provider, its notification held back."""

    event_id: str  # the provider's trade number: the shop's payment event id
    send: Callable[[], tuple[int, str]]  # the provider (re)sends its paid notification


class Provider:
    name: str
    method: str
    success: str  # the body the provider reads as accepted

    def __init__(self, settings, site_url):
        self.settings, self.site_url = settings, site_url
        settings.PAYMENT_PROVIDERS = ["sandbox", self.name]
        settings.SITE_URL = site_url

    def open(self, order):
        start = payment_start(
            snapshot=order_snapshot(order), method=self.method, token=None, device="pc", client_ip="127.0.0.1"
        )
        return start

    def stop(self):
        self.fake.stop()


class Epay(Provider):
    name, method, success = "epay", "epay.alipay", "success"

    def __init__(self, settings, site_url):
        super().__init__(settings, site_url)
        self.fake = FakeEpay().start()
        settings.EPAY_GATEWAY_URL, settings.EPAY_PID, settings.EPAY_KEY = self.fake.url, self.fake.pid, self.fake.key

    def pay(self, order) -> Paid:
        assert self.fake.open(self.open(order).pay_url)[0] == 200
        trade = self.fake.trade_for(order.order_no)
        self.fake.pay(trade.trade_no, notify=False)
        return Paid(trade.trade_no, lambda: self.fake.notify(trade))

    def pay_again(self, order) -> Paid:
        """The buyer pays the same order a second time: another trade."""
        first = self.fake.trade_for(order.order_no)
        again = replace(first, trade_no=first.trade_no + "2", status=1, refunds=[])
        self.fake.trades[again.trade_no] = again
        return Paid(again.trade_no, lambda: self.fake.notify(again))

    def refunds(self, event_id) -> list:
        return self.fake.trades[event_id].refunds


class Alipay(Provider):
    name, method, success = "alipay", "alipay", "success"

    def __init__(self, settings, site_url):
        super().__init__(settings, site_url)
        self.fake = FakeAlipay().start()
        settings.ALIPAY_APP_ID = self.fake.app_id
        settings.ALIPAY_APP_PRIVATE_KEY = self.fake.app_private_key
        settings.ALIPAY_PUBLIC_KEY = self.fake.alipay_public_key
        settings.ALIPAY_GATEWAY_URL = self.fake.url

    def pay(self, order) -> Paid:
        status, page = self.fake.open(self.open(order).pay_url)
        assert status == 200, page
        trade = self.fake.trades[order.order_no]
        self.fake.pay(order.order_no, notify=False)
        # Alipay's retries of a notification carry the state it reported.
        return Paid(trade.trade_no, lambda: self.fake.notify(trade, trade_status="TRADE_SUCCESS"))

    def pay_again(self, order) -> Paid:
        first = self.fake.trades[order.order_no]
        again = replace(first, trade_no=str(int(first.trade_no) + 500), status="TRADE_SUCCESS", refunds={})
        self.fake.trades[order.order_no + "#again"] = again  # Alipay refunds by trade_no
        return Paid(again.trade_no, lambda: self.fake.notify(again, trade_status="TRADE_SUCCESS"))

    def refunds(self, event_id) -> list:
        (trade,) = [t for t in self.fake.trades.values() if t.trade_no == event_id]
        return list(trade.refunds.values())


class Wechatpay(Provider):
    name, method, success = "wechatpay", "wechatpay", '{"code": "SUCCESS", "message": "OK"}'

    def __init__(self, settings, site_url):
        super().__init__(settings, site_url)
        self.fake = FakeWechatPay().start()
        for name, value in self.fake.settings().items():
            setattr(settings, name, value)

    def pay(self, order) -> Paid:
        self.open(order)
        trade = self.fake.transactions[order.order_no]
        self.fake.pay(order.order_no, notify=False)
        # WeChat's retries of a notification carry the resource it reported.
        resource = self.fake.transaction_resource(trade)
        return Paid(
            trade.transaction_id, lambda: self.fake.post(trade.notify_url, *self.fake.notification(dict(resource)))
        )

    def pay_again(self, order) -> Paid:
        first = self.fake.transactions[order.order_no]
        again = replace(first, transaction_id=str(int(first.transaction_id) + 500), refunds=[])
        # The order's latest transaction is the one WeChat's refund notification reports.
        self.fake.transactions[order.order_no + "#first"] = first
        self.fake.transactions[order.order_no] = again
        resource = self.fake.transaction_resource(again)
        return Paid(
            again.transaction_id, lambda: self.fake.post(again.notify_url, *self.fake.notification(dict(resource)))
        )

    def refunds(self, event_id) -> list:
        (trade,) = [t for t in self.fake.transactions.values() if t.transaction_id == event_id]
        return trade.refunds


class Stripe(Provider):
    name, method, success = "stripe", "stripe", None

    def __init__(self, settings, site_url):
        super().__init__(settings, site_url)
        self.fake = FakeStripe().start()
        settings.STRIPE_SECRET_KEY = self.fake.api_key
        settings.STRIPE_WEBHOOK_SECRET = self.fake.webhook_secret
        settings.STRIPE_API_BASE = self.fake.url
        # Stripe's own events (charge.refunded) reach the shop as they do live.
        self.fake.webhook_url = f"{site_url}/payments/webhook/stripe"

    def pay(self, order) -> Paid:
        self.open(order)
        (session,) = [s for s in self.fake.sessions.values() if s["client_reference_id"] == order.order_no]
        return self._pay_session(session["id"])

    def pay_again(self, order) -> Paid:
        """Another Checkout Session for the same order, paid too."""
        first = next(s for s in self.fake.sessions.values() if s["client_reference_id"] == order.order_no)
        again = dict(first, id=_new_id("cs"), status="open", payment_status="unpaid", payment_intent=None)
        self.fake.sessions[again["id"]] = again
        return self._pay_session(again["id"])

    def refunds(self, event_id) -> list:
        return [r for r in self.fake.refunds.values() if r["payment_intent"] == event_id]

    def _pay_session(self, session_id) -> Paid:
        webhook_url, self.fake.webhook_url = self.fake.webhook_url, None  # hold the paid event back
        try:
            event = self.fake.pay(session_id)
        finally:
            self.fake.webhook_url = webhook_url

        def send():
            status, body = self.fake.send(event, url=webhook_url)
            return status, body.decode()

        return Paid(self.fake.sessions[session_id]["payment_intent"], send)

    def stop(self):
        self.fake.stop()


CLASSES = {"epay": Epay, "alipay": Alipay, "wechatpay": Wechatpay, "stripe": Stripe}


@pytest.fixture(params=PROVIDERS)
def provider(request, settings, live_server, celery_eager):
    shop = CLASSES[request.param](settings, live_server.url)
    yield shop
    shop.stop()


def _awaiting(product, email) -> Order:
    result = checkout(product, email=email)
    persistence.order_persist_queued()
    return Order.objects.get(order_no=result.order_no)


def _accepted(provider, answer):
    status, body = answer
    assert 200 <= status < 300, answer
    if provider.success is not None:
        assert body == provider.success


def test_a_commit_failure_makes_the_provider_retry_and_the_retry_pays(provider, monkeypatch):
    product = product_with_keys(keys=2)
    order = _awaiting(product, f"commit-{provider.name}@example.com")
    paid = provider.pay(order)

    # The payment's transaction does its work, then the database fails it:
    # the event row and the status change are rolled back together.
    original, failures = order_payment._order_to_paid, []

    def fails_once(order):
        original(order)
        if not failures:
            failures.append(order.order_no)
            raise OperationalError(2013, "Lost connection to server during query")

    monkeypatch.setattr(order_payment, "_order_to_paid", fails_once)

    status, body = paid.send()
    assert status == 503, (status, body)  # every one of these providers retries a 5xx
    assert body != provider.success and "not_recorded" in body  # in the provider's own terms
    assert failures == [order.order_no]
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert not PaymentEvent.objects.filter(order=order).exists()
    assert not CardKey.objects.filter(order=order).exists()

    # The provider's retry of the same notification is accepted and delivers.
    _accepted(provider, paid.send())
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    event = PaymentEvent.objects.get(order=order)
    assert (event.provider, event.event_id, event.kind) == (provider.name, paid.event_id, "paid")
    assert CardKey.objects.filter(order=order, status="sold").count() == 1


def test_a_payment_after_the_buyer_cancelled_is_delivered_while_keys_remain(provider):
    product = product_with_keys(keys=2)
    order = _awaiting(product, f"cancel-{provider.name}@example.com")
    paid = provider.pay(order)  # paid at the provider; its notification is late

    order_cancel(order_no=order.order_no)
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED

    _accepted(provider, paid.send())
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    assert CardKey.objects.filter(order=order, status="sold").count() == 1
    assert PaymentEvent.objects.filter(order=order, kind="paid", event_id=paid.event_id).count() == 1


def test_a_refund_before_the_paid_notification_then_the_payment_delivers_nothing(provider):
    product = product_with_keys(keys=2)
    order = _awaiting(product, f"refund-first-{provider.name}@example.com")
    paid = provider.pay(order)

    # The merchant refunds at the provider before the shop heard of the payment.
    refunded = provider_get(name=provider.name).refund_start(
        order_no=order.order_no, event_id=paid.event_id, amount=order.amount, currency=order.currency
    )
    if refunded is not None:  # synchronous (epay, Alipay): the caller records it
        order_payment.order_mark_refunded(
            order_no=refunded.order_no,
            provider=provider.name,
            event_id=refunded.event_id,
            amount=refunded.amount,
            currency=refunded.currency,
            payment_event_id=paid.event_id,
        )
    # Otherwise the provider's refund notification reaches the webhook.
    wait_until(
        lambda: Order.objects.get(id=order.id).status == Order.Status.REFUNDED, timeout=30, message="refund recorded"
    )

    _accepted(provider, paid.send())

    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert not order.overpaid
    assert PaymentEvent.objects.filter(order=order, kind="paid", event_id=paid.event_id).count() == 1
    assert PaymentEvent.objects.filter(order=order, kind="refunded").count() == 1
    assert not CardKey.objects.filter(order=order).exists()
    assert "after the refund" in order.attention_reason


def test_a_second_payment_makes_the_order_overpaid_and_is_refunded_through_the_provider(provider):
    product = product_with_keys(keys=3)
    order = _awaiting(product, f"twice-{provider.name}@example.com")
    first = provider.pay(order)
    _accepted(provider, first.send())
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED

    second = provider.pay_again(order)
    assert second.event_id != first.event_id
    _accepted(provider, second.send())

    # The extra payment, and only it, is refunded at the provider; its refund
    # is recorded against it (at once, or when the provider's notification comes).
    wait_until(
        lambda: PaymentEvent.objects.filter(order=order, kind="refunded", refunds_event_id=second.event_id).exists(),
        timeout=30,
        message="the extra payment's refund recorded",
    )
    assert provider.refunds(second.event_id) and len(provider.refunds(second.event_id)) == 1
    assert not provider.refunds(first.event_id)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED and order.overpaid
    assert PaymentEvent.objects.filter(order=order, kind="paid").count() == 2
    assert PaymentEvent.objects.filter(order=order, kind="refunded").count() == 1
    assert CardKey.objects.filter(order=order).count() == 1
    assert CardKey.objects.filter(order=order, status="sold").count() == 1
