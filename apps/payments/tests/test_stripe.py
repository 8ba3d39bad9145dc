"""The Stripe provider against a local fake of Stripe's API (fake_stripe.py):
the same provider code that talks to Stripe, only STRIPE_API_BASE differs.
Checkout Sessions with the order's price and deadline (held to Stripe's 30
minutes), the signed webhook (genuine, forged, stale, mismatched, ignored),
active query, close, refunds, and no credential in any log or error."""

import logging
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory
from apps.payments.exceptions import PaymentUnavailable, UnknownProvider
from apps.payments.models import PaymentEvent, ProviderPayment
from apps.payments.providers import provider_get
from apps.payments.providers.stripe_checkout import (
    StripeProvider,
    amount_from_minor,
    amount_to_minor,
    session_expires_at,
)
from apps.payments.refunds import payment_refund_request

from .fake_stripe import stripe_signature
from .stripe_support import _deliver, _session_of, _start

# --- money and time


def test_amounts_travel_in_the_smallest_unit():
    assert amount_to_minor(Decimal("9.90"), "CNY") == 990
    assert amount_to_minor(Decimal("1234.56"), "USD") == 123456
    assert amount_to_minor(Decimal("500.00"), "JPY") == 500
    assert amount_from_minor(990, "cny") == Decimal("9.90")
    assert amount_from_minor(500, "jpy") == Decimal("500")
    with pytest.raises(ValueError):
        amount_to_minor(Decimal("1.50"), "JPY")  # no half yen
    with pytest.raises(ValueError):
        amount_to_minor(Decimal("1.00"), "XYZ")


def test_a_session_lives_at_least_thirty_minutes_and_at_most_a_day():
    now = timezone.now()
    assert session_expires_at(deadline=now + timedelta(minutes=15), now=now) >= now + timedelta(minutes=30)
    assert session_expires_at(deadline=now - timedelta(minutes=5), now=now) >= now + timedelta(minutes=30)
    assert session_expires_at(deadline=now + timedelta(hours=2), now=now) == now + timedelta(hours=2)
    assert session_expires_at(deadline=now + timedelta(days=3), now=now) <= now + timedelta(hours=24)


def test_stripe_is_one_method_in_the_currencies_it_knows():
    provider = StripeProvider()
    assert provider.methods() == ["stripe"]
    assert provider.takes_currency("CNY") and provider.takes_currency("JPY")
    assert not provider.takes_currency("XYZ")


# --- starting a payment


@pytest.mark.django_db
def test_payment_start_opens_a_checkout_session_for_the_order(fake_stripe, settings):
    order = OrderFactory(quantity=2, amount=Decimal("19.80"))
    pay_url = _start(order, deadline_in=timedelta(hours=2))

    session = _session_of(fake_stripe, order)
    assert pay_url == session["url"]
    (form,) = fake_stripe.create_calls("/v1/checkout/sessions")
    assert form["mode"] == "payment"
    assert form["line_items[0][price_data][unit_amount]"] == "1980"
    assert form["line_items[0][price_data][currency]"] == "cny"
    assert form["line_items[0][quantity]"] == "1"
    assert form["client_reference_id"] == order.order_no
    assert form["metadata[order_no]"] == order.order_no
    assert form["payment_intent_data[metadata][order_no]"] == order.order_no
    order_page = settings.SITE_URL.rstrip("/") + f"/orders/{order.order_no}"
    assert form["success_url"].startswith(order_page) and form["cancel_url"] == form["success_url"]
    assert "tok" not in form["success_url"]  # the order token never goes to Stripe
    assert abs(int(form["expires_at"]) - (time.time() + 7200)) < 60  # the order's own deadline
    assert ProviderPayment.objects.get().reference == session["id"]


@pytest.mark.django_db
def test_a_deadline_sooner_than_thirty_minutes_still_opens_a_session_that_lives_thirty(fake_stripe):
    order = OrderFactory()
    pay_url = _start(order, deadline_in=timedelta(minutes=15))

    assert pay_url  # the fake, like Stripe, refuses expires_at under 30 minutes
    expires_at = _session_of(fake_stripe, order)["expires_at"]
    assert expires_at >= time.time() + 30 * 60
    assert expires_at <= time.time() + 32 * 60


@pytest.mark.django_db
def test_coming_back_to_pay_reuses_the_open_session(fake_stripe):
    order = OrderFactory()
    first = _start(order)
    assert _start(order) == first
    assert len(fake_stripe.create_calls("/v1/checkout/sessions")) == 1


@pytest.mark.django_db
def test_a_new_session_once_the_last_one_expired(fake_stripe):
    order = OrderFactory()
    first = _start(order)
    fake_stripe.sessions[_session_of(fake_stripe, order)["id"]]["status"] = "expired"
    assert _start(order) != first
    assert ProviderPayment.objects.filter(order_no=order.order_no).count() == 2


@pytest.mark.django_db
def test_a_currency_stripe_is_not_offered_in_is_refused_before_any_call(fake_stripe):
    order = OrderFactory(currency="XYZ")
    with pytest.raises(UnknownProvider):
        _start(order)
    assert fake_stripe.calls == []


@pytest.mark.django_db
def test_stripe_is_unknown_unless_enabled(fake_stripe, settings):
    settings.PAYMENT_PROVIDERS = ["sandbox"]
    with pytest.raises(UnknownProvider):
        _start(OrderFactory())


# --- credentials stay secret


@pytest.mark.django_db
@pytest.mark.parametrize("failure", ["outage", "wrong_key", "unreachable"])
def test_a_failing_stripe_is_unavailable_and_no_log_or_error_shows_the_key(fake_stripe, settings, caplog, failure):
    secret_key = settings.STRIPE_SECRET_KEY
    if failure == "outage":
        fake_stripe.fail_status = 500
    elif failure == "wrong_key":
        fake_stripe.api_key = "sk_test_" + "0" * 32  # Stripe no longer knows the shop's key
    else:
        settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    caplog.set_level(logging.DEBUG)
    order = OrderFactory()

    with pytest.raises(PaymentUnavailable) as raised:
        _start(order)

    assert caplog.text  # the failure was logged
    assert secret_key not in caplog.text
    texts, error = [], raised.value
    while error is not None:
        texts += [str(error), repr(error), repr(getattr(error, "json_body", ""))]
        error = error.__cause__ or error.__context__
    assert all(secret_key not in text and secret_key[8:] not in text for text in texts)
    assert not ProviderPayment.objects.exists()


# --- active query and close


@pytest.mark.django_db
def test_active_query_finds_a_payment_whose_event_was_lost_and_dedupes_with_it(client, fake_stripe, fulfil_enqueued):
    order = OrderFactory()
    provider = provider_get(name="stripe")
    assert provider.payment_query(order_no=order.order_no) is None  # nothing started
    _start(order)
    assert provider.payment_query(order_no=order.order_no) is None  # open, unpaid
    event = fake_stripe.pay(_session_of(fake_stripe, order)["id"])  # its event is "lost"

    found = provider.payment_query(order_no=order.order_no)

    assert found is not None
    assert (found.order_no, found.amount, found.currency, found.kind) == (
        order.order_no,
        Decimal("9.90"),
        "CNY",
        "paid",
    )
    assert found.event_id == _session_of(fake_stripe, order)["payment_intent"]
    from apps.orders.services.payment import order_mark_paid

    order_mark_paid(
        order_no=found.order_no,
        provider="stripe",
        event_id=found.event_id,
        amount=found.amount,
        currency=found.currency,
    )
    assert _deliver(client, fake_stripe, event).status_code == 200  # the event arrives after all
    assert PaymentEvent.objects.count() == 1
    order.refresh_from_db()
    assert order.status == Order.Status.PAID


@pytest.mark.django_db
def test_close_expires_the_open_session_and_leaves_a_paid_one(fake_stripe):
    open_order, paid_order = OrderFactory(), OrderFactory()
    _start(open_order)
    _start(paid_order)
    fake_stripe.pay(_session_of(fake_stripe, paid_order)["id"])
    provider = provider_get(name="stripe")

    provider.payment_close(order_no=open_order.order_no)
    provider.payment_close(order_no=paid_order.order_no)
    provider.payment_close(order_no=open_order.order_no)  # again: nothing left to close

    assert _session_of(fake_stripe, open_order)["status"] == "expired"
    assert _session_of(fake_stripe, paid_order)["status"] == "complete"
    expired = [p for m, p, _ in fake_stripe.calls if m == "POST" and p.endswith("/expire")]
    assert expired == [f"/v1/checkout/sessions/{_session_of(fake_stripe, open_order)['id']}/expire"]


# --- refunds


def _paid_through_stripe(client, fake, order: Order) -> str:
    _start(order)
    event = fake.pay(_session_of(fake, order)["id"])
    assert _deliver(client, fake, event).status_code == 200
    return _session_of(fake, order)["payment_intent"]


@pytest.mark.django_db
def test_a_refund_is_asked_once_per_payment_and_confirmed_by_charge_refunded(
    client, fake_stripe, fulfil_enqueued, django_capture_on_commit_callbacks
):
    order = OrderFactory(quantity=2, amount=Decimal("19.80"))
    intent = _paid_through_stripe(client, fake_stripe, order)
    Order.objects.filter(id=order.id).update(status=Order.Status.REFUND_PENDING)

    assert payment_refund_request(order_id=order.id)
    assert payment_refund_request(order_id=order.id)  # a task run twice

    (refund,) = fake_stripe.refunds.values()
    assert (refund["payment_intent"], refund["amount"], refund["metadata"]) == (
        intent,
        1980,
        {"order_no": order.order_no},
    )
    refund_calls = fake_stripe.create_calls("/v1/refunds")
    assert len(refund_calls) == 2  # the second answered from the idempotency key
    (charge_refunded,) = [e for e in fake_stripe.events if e["type"] == "charge.refunded"]
    assert charge_refunded["data"]["object"]["metadata"] == {}  # the order is found through the PaymentIntent

    assert _deliver(client, fake_stripe, charge_refunded).status_code == 200
    assert _deliver(client, fake_stripe, charge_refunded).status_code == 200

    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    refunded = PaymentEvent.objects.get(kind="refunded")
    assert (refunded.provider, refunded.event_id) == ("stripe", charge_refunded["id"])


@pytest.mark.django_db
def test_a_refund_of_a_delivered_order_is_recorded(client, fake_stripe, fulfil_enqueued):
    """What the order becomes then is the order services' (refund states);
    the provider's part is to turn charge.refunded into a refund notification."""
    order = OrderFactory()
    intent = _paid_through_stripe(client, fake_stripe, order)
    Order.objects.filter(id=order.id).update(status=Order.Status.DELIVERED)
    provider_get(name="stripe").refund_start(
        order_no=order.order_no, event_id=intent, amount=Decimal("9.90"), currency="CNY"
    )
    (charge_refunded,) = [e for e in fake_stripe.events if e["type"] == "charge.refunded"]

    assert _deliver(client, fake_stripe, charge_refunded).status_code == 200

    refunded = PaymentEvent.objects.get(kind="refunded")
    assert (refunded.order_id, refunded.event_id) == (order.id, charge_refunded["id"])


@pytest.mark.django_db
def test_a_refunded_charge_of_something_else_on_the_account_is_ignored(client, fake_stripe):
    charge = {
        "id": "ch_x",
        "object": "charge",
        "amount": 500,
        "amount_refunded": 500,
        "currency": "usd",
        "payment_intent": None,
        "metadata": {},
    }
    event = fake_stripe.event("charge.refunded", charge, previous_attributes={"amount_refunded": 0})
    response = _deliver(client, fake_stripe, event)
    assert response.status_code == 200 and response.json() == {"status": "ignored"}
    assert not PaymentEvent.objects.exists()


def test_stripe_signature_matches_stripes_own_verification():
    import stripe

    payload, secret = b'{"id": "evt_1"}', "whsec_test"
    header = stripe_signature(payload, secret=secret)
    assert stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=10)
