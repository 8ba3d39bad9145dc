"""The webhook: only a genuine, fresh, matching notification changes an order,
and it changes it once, however often and however concurrently it arrives."""

import hashlib
import hmac
import threading
import time
import urllib.request
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory
from apps.payments.models import PaymentEvent
from apps.payments.sandbox_server import SIGNATURE_HEADER, notification_sign
from apps.payments.tests.factories import PaidNotificationFactory
from apps.payments.tests.fake_server import opener

URL = "/payments/webhook/sandbox"
HEADER = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")


def _post(client, body: bytes, signature: str | None):
    extra = {HEADER: signature} if signature is not None else {}
    return client.post(URL, data=body, content_type="application/json", **extra)


def _assert_unchanged(order):
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert order.paid_at is None
    assert not PaymentEvent.objects.exists()


def test_the_webhook_url_is_the_one_providers_are_given():
    assert reverse("payments:webhook", kwargs={"provider": "sandbox"}) == URL


@pytest.mark.django_db
def test_a_genuine_notification_pays_the_order_and_enqueues_fulfilment(
    client, fulfil_enqueued, django_capture_on_commit_callbacks
):
    order = OrderFactory()
    body, headers = notification_sign(PaidNotificationFactory(order=order, event_id=f"evt-{order.order_no}"))
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, body, headers[SIGNATURE_HEADER])

    assert response.status_code == 200
    assert response.json()["order_status"] == "paid"
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    event = PaymentEvent.objects.get()
    assert (event.provider, event.event_id, event.kind, event.amount) == (
        "sandbox",
        f"evt-{order.order_no}",
        "paid",
        Decimal("9.90"),
    )
    fulfil_enqueued.assert_called_once_with(order.id)


@pytest.mark.django_db
def test_a_notification_signed_with_another_secret_is_refused(client, fulfil_enqueued):
    order = OrderFactory()
    body, _ = notification_sign(PaidNotificationFactory(order=order))
    forged = hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()

    response = _post(client, body, forged)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    assert response.json()["detail"]
    _assert_unchanged(order)
    fulfil_enqueued.assert_not_called()


@pytest.mark.django_db
def test_a_tampered_amount_breaks_the_signature(client):
    order = OrderFactory(quantity=3, amount=Decimal("29.70"))
    body, headers = notification_sign(PaidNotificationFactory(order=order))
    tampered = body.replace(b'"29.70"', b'"0.01"')
    assert tampered != body

    response = _post(client, tampered, headers[SIGNATURE_HEADER])

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    _assert_unchanged(order)


@pytest.mark.django_db
@pytest.mark.parametrize("signature", [None, "", "0" * 64, "zz"])
def test_a_missing_or_garbled_signature_is_refused(client, signature):
    order = OrderFactory()
    body, _ = notification_sign(PaidNotificationFactory(order=order))

    response = _post(client, body, signature)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    _assert_unchanged(order)


@pytest.mark.django_db
@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_a_notification_outside_the_time_window_is_refused(client, settings, offset):
    settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS = 300
    order = OrderFactory()
    body, headers = notification_sign(PaidNotificationFactory(order=order, timestamp=int(time.time()) + offset))

    response = _post(client, body, headers[SIGNATURE_HEADER])

    assert response.status_code == 400
    assert response.json()["error"] == "stale_timestamp"
    _assert_unchanged(order)


@pytest.mark.django_db
@pytest.mark.parametrize("changes", [{"amount": "9.89"}, {"amount": "99.00"}, {"currency": "USD"}])
def test_a_payment_that_does_not_match_the_order_is_refused(client, changes):
    order = OrderFactory()
    body, headers = notification_sign(PaidNotificationFactory(order=order, **changes))

    response = _post(client, body, headers[SIGNATURE_HEADER])

    assert response.status_code == 400
    assert response.json()["error"] == "payment_mismatch"
    assert response.json()["detail"]
    _assert_unchanged(order)


@pytest.mark.django_db
def test_a_notification_for_an_unknown_order_is_refused(client):
    body, headers = notification_sign(
        {
            "event_id": "e1",
            "order_no": "261122-1-NOSUCHORDER0",
            "amount": "9.90",
            "currency": "CNY",
            "kind": "paid",
            "timestamp": int(time.time()),
        }
    )

    response = _post(client, body, headers[SIGNATURE_HEADER])

    assert response.status_code == 404
    assert response.json()["error"] == "order_not_found"
    assert not PaymentEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"amount": "lots"},
        {"amount": "-9.90"},
        {"kind": "chargeback"},
        {"timestamp": "yesterday"},
        {"event_id": ""},
    ],
)
def test_a_signed_but_malformed_notification_is_refused(client, fields):
    order = OrderFactory()
    body, headers = notification_sign(PaidNotificationFactory(order=order, **fields))

    response = _post(client, body, headers[SIGNATURE_HEADER])

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_notification"
    _assert_unchanged(order)


@pytest.mark.django_db
def test_an_unknown_provider_is_404(client):
    response = client.post("/payments/webhook/nosuchpay", data=b"{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_provider"


@pytest.mark.django_db
def test_a_disabled_provider_is_404(client, settings):
    settings.PAYMENT_PROVIDERS = []
    order = OrderFactory()
    body, headers = notification_sign(PaidNotificationFactory(order=order))
    response = _post(client, body, headers[SIGNATURE_HEADER])
    assert response.status_code == 404
    _assert_unchanged(order)


def test_the_webhook_takes_only_post(client):
    assert client.get(URL).status_code == 405


@pytest.mark.django_db
def test_a_repeated_notification_answers_200_and_changes_nothing(
    client, fulfil_enqueued, django_capture_on_commit_callbacks
):
    order = OrderFactory()
    body, headers = notification_sign(PaidNotificationFactory(order=order))
    with django_capture_on_commit_callbacks(execute=True):
        first = _post(client, body, headers[SIGNATURE_HEADER])
    order.refresh_from_db()
    paid_at = order.paid_at

    with django_capture_on_commit_callbacks(execute=True):
        again = _post(client, body, headers[SIGNATURE_HEADER])

    assert first.status_code == again.status_code == 200
    order.refresh_from_db()
    assert order.paid_at == paid_at
    assert PaymentEvent.objects.count() == 1
    assert fulfil_enqueued.call_count == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_notification_ten_times_at_once_pays_once(live_server, fulfil_enqueued):
    """Ten concurrent deliveries over real HTTP to the live server's threads."""
    order = OrderFactory()
    body, headers = notification_sign(PaidNotificationFactory(order=order))
    barrier = threading.Barrier(10)
    statuses, errors = [], []

    def deliver():
        request = urllib.request.Request(
            live_server.url + URL,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **headers},
        )
        barrier.wait()
        try:
            with opener.open(request, timeout=30) as response:
                statuses.append(response.status)
        except Exception as exc:  # an HTTPError is an answer too; keep it to report
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert statuses == [200] * 10
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert PaymentEvent.objects.filter(order=order).count() == 1
    assert fulfil_enqueued.call_count == 1
