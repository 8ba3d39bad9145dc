"""The Stripe webhook against the local fake of Stripe: genuine, forged, stale, mismatched and ignored events."""

import json
import time
from decimal import Decimal

import pytest

from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory
from apps.payments.models import PaymentEvent

from .stripe_support import URL, _assert_unchanged, _deliver, _post, _session_of, _start

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
