"""Active query: before an order with a started payment expires, and when the
buyer presses "I have paid", the shop asks the provider; a paid answer goes
through the same dedupe path as a notification, so a lost notification never
costs the buyer the keys."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from apps.orders.models import Order
from apps.orders.selectors import order_snapshot_get
from apps.orders.services import expiry, persistence
from apps.orders.tests.support import checkout, pay, product_with_keys
from apps.payments.models import PaymentEvent, ProviderPayment
from apps.payments.providers.base import PaymentNotification
from apps.payments.providers.sandbox import SandboxProvider
from apps.payments.services import payment_start, payments_query_expiring

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def quiet_tasks(monkeypatch):
    """No broker: fulfilment, refunds and closes are published, not run."""
    published = {"fulfil": [], "close": []}
    monkeypatch.setattr(
        "apps.orders.tasks.fulfil_order_task.delay", lambda order_id=None: published["fulfil"].append(order_id)
    )
    monkeypatch.setattr("apps.payments.tasks.payment_close_task.delay", lambda no: published["close"].append(no))
    return published


@pytest.fixture
def provider_says_paid(monkeypatch):
    """The sandbox, asked, answers "paid" for the orders listed here."""
    paid: dict[str, Decimal] = {}

    def payment_query(self, *, order_no):
        if order_no not in paid:
            return None
        return PaymentNotification(
            event_id=f"trade-{order_no}",
            order_no=order_no,
            amount=paid[order_no],
            currency="CNY",
            kind=PaymentEvent.Kind.PAID,
            timestamp=datetime.now(UTC),
        )

    monkeypatch.setattr(SandboxProvider, "payment_query", payment_query)
    return paid


def started_order(product, email, *, seconds_left):
    result = checkout(product, email=email)
    persistence.order_persist_queued()
    Order.objects.filter(order_no=result.order_no).update(
        reserved_until=timezone.now() + timezone.timedelta(seconds=seconds_left)
    )
    snapshot = order_snapshot_get(order_no=result.order_no, token=result.access_token)
    payment_start(snapshot=snapshot, method="sandbox", token=None, device="pc", client_ip="")
    return result


def test_starting_a_payment_remembers_the_provider():
    product = product_with_keys(keys=1)
    result = started_order(product, "a@x.com", seconds_left=600)
    assert list(ProviderPayment.objects.values_list("order_no", "provider")) == [(result.order_no, "sandbox")]


def test_an_expiring_order_found_paid_at_its_provider_is_paid_once(quiet_tasks, provider_says_paid):
    product = product_with_keys(keys=3, per_buyer_limit=1)
    paid = started_order(product, "paid@x.com", seconds_left=10)
    unpaid = started_order(product, "unpaid@x.com", seconds_left=10)
    later = started_order(product, "later@x.com", seconds_left=600)  # not about to expire: not asked
    provider_says_paid[paid.order_no] = provider_says_paid[later.order_no] = Decimal("9.90")

    assert payments_query_expiring() == 1

    assert Order.objects.get(order_no=paid.order_no).status == Order.Status.PAID
    assert Order.objects.get(order_no=unpaid.order_no).status == Order.Status.AWAITING_PAYMENT
    assert Order.objects.get(order_no=later.order_no).status == Order.Status.AWAITING_PAYMENT
    # The lost notification arrives after all: the same event, applied once.
    pay(paid.order_no, event_id=f"trade-{paid.order_no}")
    assert PaymentEvent.objects.filter(order__order_no=paid.order_no).count() == 1
    assert payments_query_expiring() == 0  # asked again: nothing more


def test_expiry_waits_for_the_question_then_closes_the_provider_payment(quiet_tasks, settings):
    settings.PAYMENT_QUERY_GRACE_SECONDS = 60
    product = product_with_keys(keys=2, per_buyer_limit=1)
    started = started_order(product, "started@x.com", seconds_left=-10)
    plain = checkout(product, email="plain@x.com")  # no payment started
    persistence.order_persist_queued()
    Order.objects.filter(order_no=plain.order_no).update(reserved_until=timezone.now() - timezone.timedelta(seconds=10))

    assert expiry.order_expire_due() == 1
    assert Order.objects.get(order_no=plain.order_no).status == Order.Status.EXPIRED
    assert Order.objects.get(order_no=started.order_no).status == Order.Status.AWAITING_PAYMENT
    assert quiet_tasks["close"] == []

    assert expiry.order_expire_due(now=timezone.now() + timezone.timedelta(seconds=61)) == 1
    assert Order.objects.get(order_no=started.order_no).status == Order.Status.EXPIRED
    assert quiet_tasks["close"] == [started.order_no]


def test_i_have_paid_asks_the_provider_now(client, quiet_tasks, provider_says_paid):
    product = product_with_keys(keys=1)
    result = started_order(product, "buyer@x.com", seconds_left=600)
    url = f"/orders/{result.order_no}/check-payment?token={result.access_token}"

    page = client.post(url, follow=True).content.decode()
    assert "No payment has arrived yet." in page
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.AWAITING_PAYMENT

    provider_says_paid[result.order_no] = Decimal("9.90")
    page = client.post(url, follow=True).content.decode()
    assert "Your payment has arrived." in page
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.PAID
    assert Client().post(f"/orders/{result.order_no}/check-payment?token=wrong").status_code == 404
