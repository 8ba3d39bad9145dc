"""The Stripe provider against a local fake of Stripe's API (fake_stripe.py):
the same provider code that talks to Stripe, only STRIPE_API_BASE differs.
Checkout Sessions with the order's price and deadline (held to Stripe's 30
minutes), the signed webhook (genuine, forged, stale, mismatched, ignored),
active query, close, refunds, and no credential in any log or error."""

import json
import logging
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory
from apps.payments import services
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

URL = "/payments/webhook/stripe"


def _snapshot(order: Order, *, deadline_in: timedelta = timedelta(minutes=15)) -> dict:
    return {
        "order_no": order.order_no,
        "amount": str(order.amount),
        "currency": order.currency,
        "title": order.product.title,
        "status": order.status,
        "pay_deadline": (timezone.now() + deadline_in).isoformat(),
    }


def _start(order: Order, **kwargs) -> str:
    start = services.payment_start(
        snapshot=_snapshot(order, **kwargs), method="stripe", token="tok", device="pc", client_ip="127.0.0.1"
    )
    return start.pay_url


def _session_of(fake, order: Order) -> dict:
    (session,) = [s for s in fake.sessions.values() if s["client_reference_id"] == order.order_no]
    return session


def _post(client, payload: bytes, signature: str | None):
    extra = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
    return client.post(URL, data=payload, content_type="application/json", **extra)


def _deliver(client, fake, event: dict, **sign):
    payload, header = fake.signed(event, **sign)
    return _post(client, payload, header)


def _assert_unchanged(order: Order):
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert order.paid_at is None
    assert not PaymentEvent.objects.exists()


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


# --- the webhook


@pytest.mark.django_db
def test_a_paid_session_pays_the_order_with_the_payment_intent_as_event_id(
    client, fake_stripe, fulfil_enqueued, django_capture_on_commit_callbacks
):
    order = OrderFactory(quantity=3, amount=Decimal("29.70"))
    _start(order)
    event = fake_stripe.pay(_session_of(fake_stripe, order)["id"])

    with django_capture_on_commit_callbacks(execute=True):
        response = _deliver(client, fake_stripe, event)

    assert response.status_code == 200, response.content
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    payment = PaymentEvent.objects.get()
    assert (payment.provider, payment.event_id, payment.kind) == (
        "stripe",
        _session_of(fake_stripe, order)["payment_intent"],
        "paid",
    )
    assert payment.event_id.startswith("pi_")
    assert (payment.amount, payment.currency) == (Decimal("29.70"), "CNY")
    fulfil_enqueued.assert_called_once_with(order.id)


@pytest.mark.django_db
def test_an_async_payment_that_succeeds_later_pays_the_order(client, fake_stripe, fulfil_enqueued):
    order = OrderFactory()
    _start(order)
    completed = fake_stripe.pay(_session_of(fake_stripe, order)["id"], payment_status="unpaid")

    response = _deliver(client, fake_stripe, completed)
    assert response.status_code == 200 and response.json() == {"status": "ignored"}
    _assert_unchanged(order)

    session = {**completed["data"]["object"], "payment_status": "paid"}
    response = _deliver(client, fake_stripe, fake_stripe.event("checkout.session.async_payment_succeeded", session))
    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.PAID


@pytest.mark.django_db
def test_a_forged_signature_is_refused_and_changes_nothing(client, fake_stripe):
    order = OrderFactory()
    _start(order)
    event = fake_stripe.pay(_session_of(fake_stripe, order)["id"])

    response = _deliver(client, fake_stripe, event, secret="whsec_" + "f" * 32)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    _assert_unchanged(order)


@pytest.mark.django_db
@pytest.mark.parametrize("header", [None, "", "t=1,v1=00", "garbage", "v1=abc"])
def test_a_missing_or_garbled_signature_is_refused(client, fake_stripe, header):
    order = OrderFactory()
    _start(order)
    payload = json.dumps(fake_stripe.pay(_session_of(fake_stripe, order)["id"])).encode()

    response = _post(client, payload, header)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    _assert_unchanged(order)


@pytest.mark.django_db
def test_a_tampered_amount_breaks_the_signature(client, fake_stripe):
    order = OrderFactory()
    _start(order)
    payload, header = fake_stripe.signed(fake_stripe.pay(_session_of(fake_stripe, order)["id"]))
    tampered = payload.replace(b'"amount_total": 990', b'"amount_total": 1')
    assert tampered != payload

    response = _post(client, tampered, header)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    _assert_unchanged(order)


@pytest.mark.django_db
@pytest.mark.parametrize("offset", [-301, 305, -3 * 86400])
def test_a_genuine_signature_outside_the_time_window_is_stale(client, fake_stripe, settings, offset):
    settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS = 300
    order = OrderFactory()
    _start(order)
    event = fake_stripe.pay(_session_of(fake_stripe, order)["id"])

    response = _deliver(client, fake_stripe, event, timestamp=int(time.time()) + offset)

    assert response.status_code == 400
    assert response.json()["error"] == "stale_timestamp"
    _assert_unchanged(order)


@pytest.mark.django_db
def test_an_old_event_signed_afresh_is_accepted(client, fake_stripe, fulfil_enqueued):
    """Stripe retries an event for days, signing each delivery anew: the
    signature's time counts, not the event's."""
    order = OrderFactory()
    _start(order)
    event = fake_stripe.pay(_session_of(fake_stripe, order)["id"])
    event["created"] -= 2 * 86400

    assert _deliver(client, fake_stripe, event).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("changes", [{"amount_total": 989}, {"amount_total": 99000}, {"currency": "usd"}])
def test_a_genuine_payment_that_does_not_match_the_order_is_refused(client, fake_stripe, changes):
    order = OrderFactory()
    _start(order)
    event = fake_stripe.pay(_session_of(fake_stripe, order)["id"])
    event["data"]["object"].update(changes)

    response = _deliver(client, fake_stripe, event)

    assert response.status_code == 400
    assert response.json()["error"] == "payment_mismatch"
    _assert_unchanged(order)


@pytest.mark.django_db
@pytest.mark.parametrize("changes", [{"payment_intent": None}, {"amount_total": "990"}, {"currency": "xyz"}])
def test_a_genuine_but_unreadable_payment_is_malformed(client, fake_stripe, changes):
    order = OrderFactory()
    _start(order)
    event = fake_stripe.pay(_session_of(fake_stripe, order)["id"])
    event["data"]["object"].update(changes)

    response = _deliver(client, fake_stripe, event)

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_notification"
    _assert_unchanged(order)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        ("payment_intent.created", {"id": "pi_x", "object": "payment_intent", "metadata": {}}),
        ("checkout.session.expired", {"id": "cs_x", "object": "checkout.session", "payment_status": "unpaid"}),
        ("customer.created", {"id": "cus_x", "object": "customer"}),
    ],
)
def test_other_genuine_events_are_acknowledged_and_ignored(client, fake_stripe, event_type, obj):
    order = OrderFactory()

    response = _deliver(client, fake_stripe, fake_stripe.event(event_type, obj))

    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    _assert_unchanged(order)


@pytest.mark.django_db
def test_a_forged_event_of_an_ignored_type_is_still_refused(client, fake_stripe):
    event = fake_stripe.event("customer.created", {"id": "cus_x", "object": "customer"})
    assert _deliver(client, fake_stripe, event, secret="whsec_forged0000000000").status_code == 400


@pytest.mark.django_db
def test_a_paid_session_of_something_else_on_the_account_is_ignored(client, fake_stripe):
    order = OrderFactory()
    _start(order)
    event = fake_stripe.pay(_session_of(fake_stripe, order)["id"])
    event["data"]["object"].update(client_reference_id=None, metadata={})

    response = _deliver(client, fake_stripe, event)

    assert response.status_code == 200 and response.json() == {"status": "ignored"}
    _assert_unchanged(order)


@pytest.mark.django_db
def test_the_webhook_refuses_get(client, fake_stripe):
    assert client.get(URL).status_code == 405


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
