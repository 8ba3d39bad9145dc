"""The sandbox provider behaves like a real one: a payment page and an API call
that lead to a signed notification, delivered over HTTP to the webhook and
retried until it is accepted; refunds the same way."""

import time
from decimal import Decimal

import pytest

from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory
from apps.payments.delivery import webhook_deliver
from apps.payments.exceptions import InvalidSignature, NotificationDeliveryFailed
from apps.payments.models import PaymentEvent
from apps.payments.providers import provider_get
from apps.payments.refunds import payment_refund_request
from apps.payments.sandbox_server import (
    SIGNATURE_HEADER,
    notification_deliver,
    notification_sign,
    sandbox_notification_deliver_task,
)

from .factories import PaymentEventFactory


def _sent_fields(sandbox_sent) -> dict:
    sandbox_sent.assert_called_once()
    return sandbox_sent.call_args.kwargs["fields"]


# --- signing and verifying


def test_a_signed_notification_verifies_into_trusted_typed_data():
    body, headers = notification_sign(
        {
            "event_id": "e1",
            "order_no": "261122-1-ABC",
            "amount": "19.80",
            "currency": "CNY",
            "kind": "paid",
            "timestamp": 1_800_000_000,
        }
    )
    notification = provider_get(name="sandbox").notification_verify(body=body, headers=headers, query={})
    assert notification.amount == Decimal("19.80") and isinstance(notification.amount, Decimal)
    assert (notification.event_id, notification.order_no, notification.currency, notification.kind) == (
        "e1",
        "261122-1-ABC",
        "CNY",
        "paid",
    )
    assert notification.timestamp.timestamp() == 1_800_000_000
    assert notification.timestamp.tzinfo is not None


def test_verification_uses_the_configured_secret(settings):
    body, headers = notification_sign(
        {"event_id": "e1", "order_no": "o", "amount": "1.00", "currency": "CNY", "kind": "paid", "timestamp": 1}
    )
    settings.SANDBOX_PAYMENT_SECRET = "rotated-secret"
    with pytest.raises(InvalidSignature):
        provider_get(name="sandbox").notification_verify(body=body, headers=headers, query={})


# --- the sandbox pay API (README, JSON API)


@pytest.mark.django_db
def test_the_pay_api_with_the_token_header_sends_a_paid_notification(
    client, sandbox_sent, django_capture_on_commit_callbacks
):
    order, token = OrderFactory.create_with_token(quantity=2, amount=Decimal("19.80"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/payments/sandbox/{order.order_no}/pay", HTTP_X_ORDER_TOKEN=token)

    assert response.status_code == 202
    assert response.json()["order_no"] == order.order_no
    assert _sent_fields(sandbox_sent) == {
        "event_id": f"sandbox-paid-{order.order_no}",
        "order_no": order.order_no,
        "amount": "19.80",
        "currency": "CNY",
        "kind": "paid",
    }


@pytest.mark.django_db
def test_the_pay_api_takes_the_token_in_the_json_body(client, sandbox_sent, django_capture_on_commit_callbacks):
    order, token = OrderFactory.create_with_token()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/api/v1/payments/sandbox/{order.order_no}/pay", data={"token": token}, content_type="application/json"
        )
    assert response.status_code == 202
    assert _sent_fields(sandbox_sent)["order_no"] == order.order_no


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["wrong header", "wrong body", "none", "a form"])
def test_the_pay_api_without_the_right_token_is_404_and_sends_nothing(
    client, sandbox_sent, django_capture_on_commit_callbacks, how
):
    order, _ = OrderFactory.create_with_token()
    url = f"/api/v1/payments/sandbox/{order.order_no}/pay"
    with django_capture_on_commit_callbacks(execute=True):
        if how == "wrong header":
            response = client.post(url, HTTP_X_ORDER_TOKEN="guess")
        elif how == "wrong body":
            response = client.post(url, data={"token": "guess"}, content_type="application/json")
        elif how == "none":
            response = client.post(url)
        else:
            response = client.post(url, data={"token": "guess"})
    assert response.status_code == 404
    assert response.json()["error"] == "order_not_found"
    sandbox_sent.assert_not_called()


@pytest.mark.django_db
def test_the_pay_api_refuses_a_json_body_that_is_not_an_object(client, sandbox_sent):
    order, _ = OrderFactory.create_with_token()
    response = client.post(
        f"/api/v1/payments/sandbox/{order.order_no}/pay", data=b"{nope", content_type="application/json"
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid"
    sandbox_sent.assert_not_called()


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Order.Status.PAID, Order.Status.DELIVERED, Order.Status.REFUNDED])
def test_an_order_already_paid_cannot_be_paid_again(client, sandbox_sent, django_capture_on_commit_callbacks, status):
    order, token = OrderFactory.create_with_token(status=status)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/payments/sandbox/{order.order_no}/pay", HTTP_X_ORDER_TOKEN=token)
    assert response.status_code == 409
    assert response.json()["error"] == "not_payable"
    sandbox_sent.assert_not_called()


def test_the_pay_api_takes_only_post(client):
    assert client.get("/api/v1/payments/sandbox/261122-1-ABC/pay").status_code == 405


# --- the payment page


@pytest.mark.django_db
def test_the_pay_page_shows_the_amount_and_both_buttons(client):
    order, token = OrderFactory.create_with_token(quantity=2, amount=Decimal("19.80"))
    response = client.get(f"/pay/sandbox/{order.order_no}?token={token}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "¥19.80" in html
    assert 'name="pay"' in html and 'name="cancel"' in html
    assert order.order_no in html


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["", "?token=", "?token=guess"])
def test_the_pay_page_is_404_without_the_token(client, query):
    order, _ = OrderFactory.create_with_token()
    assert client.get(f"/pay/sandbox/{order.order_no}{query}").status_code == 404


@pytest.mark.django_db
def test_pay_on_the_page_sends_the_notification_and_returns_to_the_order(
    client, sandbox_sent, django_capture_on_commit_callbacks
):
    order, token = OrderFactory.create_with_token()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/pay/sandbox/{order.order_no}?token={token}", {"pay": "1"})
    assert response.status_code == 302
    assert response["Location"] == f"/orders/{order.order_no}?token={token}"
    assert _sent_fields(sandbox_sent)["kind"] == "paid"


@pytest.mark.django_db
def test_cancel_on_the_page_returns_to_the_order_without_paying(
    client, sandbox_sent, django_capture_on_commit_callbacks
):
    order, token = OrderFactory.create_with_token()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/pay/sandbox/{order.order_no}?token={token}", {"cancel": "1"})
    assert response.status_code == 302
    assert response["Location"] == f"/orders/{order.order_no}?token={token}"
    sandbox_sent.assert_not_called()


@pytest.mark.django_db
def test_the_pay_page_of_a_paid_order_offers_no_pay_button(client):
    order, token = OrderFactory.create_with_token(status=Order.Status.PAID)
    response = client.get(f"/pay/sandbox/{order.order_no}?token={token}")
    assert response.status_code == 200
    assert 'name="pay"' not in response.content.decode()


# --- delivery: HTTP, retries, fresh signatures


def test_delivery_retries_until_the_webhook_answers_2xx():
    answers = iter([503, 500, 200])
    sleeps, bodies = [], []

    def post(url, body, headers, timeout):
        bodies.append(body)
        return next(answers)

    counter = iter(range(100))
    status = webhook_deliver(
        url="http://shop/webhook",
        message=lambda: (str(next(counter)).encode(), {}),
        attempts=3,
        timeout=1.0,
        post=post,
        sleep=sleeps.append,
    )
    assert status == 200
    assert bodies == [b"0", b"1", b"2"]  # each attempt is signed afresh
    assert sleeps == [0.5, 1.0]


def test_delivery_gives_up_after_its_attempts_with_the_reason():
    calls = []

    def post(url, body, headers, timeout):
        calls.append(timeout)
        raise TimeoutError("timed out")

    with pytest.raises(NotificationDeliveryFailed, match="TimeoutError.*after 3 attempt"):
        webhook_deliver(
            url="http://shop/webhook",
            message=lambda: (b"", {}),
            attempts=3,
            timeout=2.5,
            post=post,
            sleep=lambda s: None,
        )
    assert calls == [2.5, 2.5, 2.5]


def test_delivery_to_a_server_that_is_down_fails_over_real_http(settings):
    settings.SITE_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.SANDBOX_WEBHOOK_TIMEOUT_SECONDS = 1
    with pytest.raises(NotificationDeliveryFailed, match="after 3 attempt"):
        notification_deliver(
            fields={"event_id": "e", "order_no": "o", "amount": "1.00", "currency": "CNY", "kind": "paid"},
            sleep=lambda s: None,
        )


@pytest.mark.django_db(transaction=True)
def test_pay_api_to_paid_order_end_to_end_over_real_http(client, live_server, settings, sandbox_sent, fulfil_enqueued):
    """API call → the task POSTs the signed notification to the live server's
    webhook → the order is paid once and fulfilment is enqueued."""
    settings.SITE_URL = live_server.url
    order, token = OrderFactory.create_with_token()
    assert client.post(f"/api/v1/payments/sandbox/{order.order_no}/pay", HTTP_X_ORDER_TOKEN=token).status_code == 202
    fields = _sent_fields(sandbox_sent)

    sandbox_notification_deliver_task.apply(kwargs={"fields": fields}, throw=True)
    # The sandbox may deliver again (a retry after a lost answer): nothing changes.
    assert notification_deliver(fields=fields) == 200

    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert PaymentEvent.objects.filter(order=order, kind="paid").count() == 1
    fulfil_enqueued.assert_called_once_with(order.id)


@pytest.mark.django_db(transaction=True)
def test_a_notification_refused_by_the_webhook_is_retried_then_reported(live_server, settings):
    """The webhook answers 404 for an order not persisted yet: the sandbox retries
    and, after its attempts, raises so the Celery task retries later."""
    settings.SITE_URL = live_server.url
    sleeps = []
    with pytest.raises(NotificationDeliveryFailed, match="HTTP 404 after 3 attempt"):
        notification_deliver(
            fields={
                "event_id": "e",
                "order_no": "261122-1-NOTPERSISTED",
                "amount": "9.90",
                "currency": "CNY",
                "kind": "paid",
            },
            sleep=sleeps.append,
        )
    assert len(sleeps) == 2
    assert not PaymentEvent.objects.exists()


# --- refunds


@pytest.mark.django_db(transaction=True)
def test_a_refund_pending_order_is_refunded_through_the_webhook(live_server, settings, sandbox_sent):
    settings.SITE_URL = live_server.url
    order, _ = OrderFactory.create_with_token(status=Order.Status.REFUND_PENDING)
    PaymentEventFactory(order=order)

    assert payment_refund_request(order_id=order.id) is True
    fields = _sent_fields(sandbox_sent)
    assert fields["kind"] == "refunded" and fields["amount"] == "9.90"
    assert notification_deliver(fields=fields) == 200

    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert PaymentEvent.objects.filter(order=order, kind="refunded").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Order.Status.REFUNDED, Order.Status.DELIVERED])
def test_only_a_refund_pending_order_with_a_payment_is_refunded(sandbox_sent, status):
    order, _ = OrderFactory.create_with_token(status=status)
    PaymentEventFactory(order=order)
    unpaid, _ = OrderFactory.create_with_token(status=Order.Status.REFUND_PENDING)

    assert payment_refund_request(order_id=order.id) is False
    assert payment_refund_request(order_id=unpaid.id) is False
    sandbox_sent.assert_not_called()


def test_notifications_carry_a_current_timestamp():
    captured = []

    def post(url, body, headers, timeout):
        captured.append((body, headers))
        return 204

    notification_deliver(
        fields={"event_id": "e", "order_no": "o", "amount": "1.00", "currency": "CNY", "kind": "paid"}, post=post
    )
    body, headers = captured[0]
    notification = provider_get(name="sandbox").notification_verify(body=body, headers=headers, query={})
    assert abs(notification.timestamp.timestamp() - time.time()) < 5
    assert SIGNATURE_HEADER in headers


@pytest.mark.django_db
def test_payment_events_are_listed_read_only_in_the_admin(admin_client):
    order, _ = OrderFactory.create_with_token()
    PaymentEventFactory(order=order)
    listing = admin_client.get("/admin/payments/paymentevent/")
    assert listing.status_code == 200
    assert f"test-paid-{order.order_no}" in listing.content.decode()
    assert admin_client.get("/admin/payments/paymentevent/add/").status_code == 403


@pytest.mark.django_db
def test_a_disabled_sandbox_serves_no_payment_page_and_takes_no_payment(
    client, settings, sandbox_sent, django_capture_on_commit_callbacks
):
    settings.PAYMENT_PROVIDERS = ["someotherpay"]
    order, token = OrderFactory.create_with_token()
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get(f"/pay/sandbox/{order.order_no}?token={token}").status_code == 404
        response = client.post(f"/api/v1/payments/sandbox/{order.order_no}/pay", HTTP_X_ORDER_TOKEN=token)
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_provider"
    sandbox_sent.assert_not_called()
