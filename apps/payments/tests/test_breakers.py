"""A payment provider that times out opens its circuit breaker: calls fail fast,
the buyer is told payment is unavailable and the order is kept, and once the
provider recovers the breaker closes on its own and the payment goes through."""

import time

import pytest
from django.utils import translation
from django.utils.translation import gettext

from apps.core.breakers import breaker_states
from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory
from apps.payments.exceptions import NotificationDeliveryFailed, PaymentUnavailable
from apps.payments.models import PaymentEvent
from apps.payments.refunds import payment_refund_request
from apps.payments.sandbox_server import notification_deliver, sandbox_notification_deliver_task

from .factories import PaymentEventFactory
from .silent_server import SilentServer

RESET = 2  # seconds (pybreaker's Redis storage keeps whole seconds: open for ≥ RESET - 1)
UNAVAILABLE = "Payment is temporarily unavailable. Your order is kept: please try again in a few minutes."


@pytest.fixture(autouse=True)
def _breaker_settings(settings):
    settings.CIRCUIT_BREAKERS = {
        "payment": {"fail_max": 3, "reset_timeout": RESET},
        "mail": {"fail_max": 3, "reset_timeout": RESET},
    }
    settings.SANDBOX_WEBHOOK_TIMEOUT_SECONDS = 0.3
    settings.SANDBOX_WEBHOOK_ATTEMPTS = 1
    settings.RATELIMIT_PAY_IP = ""  # this test pays the same order many times from one address


def _trip_with_a_hanging_provider(settings, fields) -> SilentServer:
    """Deliveries to a webhook that never answers, until the breaker opens."""
    server = SilentServer().__enter__()
    settings.SITE_URL = server.url
    for _ in range(3):
        with pytest.raises(NotificationDeliveryFailed):
            notification_deliver(fields=fields, sleep=lambda s: None)
    return server


@pytest.mark.django_db(transaction=True)
def test_a_provider_that_times_out_opens_the_breaker_and_the_payment_goes_through_after(
    client, live_server, settings, sandbox_sent, fulfil_enqueued
):
    order, token = OrderFactory.create_with_token()
    pay_api = f"/api/v1/payments/sandbox/{order.order_no}/pay"
    assert client.post(pay_api, HTTP_X_ORDER_TOKEN=token).status_code == 202
    fields = sandbox_sent.call_args.kwargs["fields"]

    server = _trip_with_a_hanging_provider(settings, fields)
    try:
        assert server.connections == 3
        assert breaker_states()["payment:sandbox"] == "open"

        # Open: a delivery fails fast and does not reach the provider.
        started = time.monotonic()
        with pytest.raises(NotificationDeliveryFailed, match="open"):
            notification_deliver(fields=fields, sleep=lambda s: None)
        assert time.monotonic() - started < 0.2
        assert server.connections == 3

        # The buyer is told, on the API, the pay page and the order page.
        sandbox_sent.reset_mock()
        api = client.post(pay_api, HTTP_X_ORDER_TOKEN=token)
        assert api.status_code == 503
        assert api.json() == {"error": "payment_unavailable", "detail": UNAVAILABLE}
        assert 1 <= int(api["Retry-After"]) <= RESET
        page = client.post(f"/pay/sandbox/{order.order_no}?token={token}", {"pay": "1"})
        assert page.status_code == 503 and "Retry-After" in page
        assert UNAVAILABLE in page.content.decode()
        order_page = client.get(f"/orders/{order.order_no}?token={token}")
        assert order_page.status_code == 200
        assert UNAVAILABLE in order_page.content.decode()
        assert 'name="method" value="sandbox"' in order_page.content.decode()  # a later try may pass
        sandbox_sent.assert_not_called()
    finally:
        server.__exit__(None, None, None)

    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert not PaymentEvent.objects.exists()

    # The provider recovers; after reset_timeout one trial call closes the breaker.
    settings.SITE_URL = live_server.url
    time.sleep(RESET + 1)
    assert client.post(pay_api, HTTP_X_ORDER_TOKEN=token).status_code == 202
    assert breaker_states()["payment:sandbox"] == "closed"
    sandbox_notification_deliver_task.apply(kwargs={"fields": sandbox_sent.call_args.kwargs["fields"]}, throw=True)

    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    fulfil_enqueued.assert_called_once_with(order.id)


@pytest.mark.django_db(transaction=True)
def test_a_failed_trial_delivery_keeps_the_breaker_open(live_server, settings):
    fields = {"event_id": "e", "order_no": "261122-1-X", "amount": "1.00", "currency": "CNY", "kind": "paid"}
    server = _trip_with_a_hanging_provider(settings, fields)
    try:
        time.sleep(RESET + 1)
        with pytest.raises(NotificationDeliveryFailed):
            notification_deliver(fields=fields, sleep=lambda s: None)
        assert server.connections == 4  # the one trial call went through
        assert breaker_states()["payment:sandbox"] == "open"
    finally:
        server.__exit__(None, None, None)


@pytest.mark.django_db
def test_a_webhook_answer_of_any_status_is_not_a_provider_failure(settings):
    def answers_404(url, body, headers, timeout):
        return 404

    fields = {"event_id": "e", "order_no": "o", "amount": "1.00", "currency": "CNY", "kind": "paid"}
    for _ in range(5):
        with pytest.raises(NotificationDeliveryFailed, match="HTTP 404"):
            notification_deliver(fields=fields, post=answers_404, sleep=lambda s: None)
    assert breaker_states()["payment:sandbox"] == "closed"


@pytest.mark.django_db(transaction=True)
def test_while_open_a_refund_is_not_sent_and_its_task_retries(settings, sandbox_sent):
    order, _ = OrderFactory.create_with_token(status=Order.Status.REFUND_PENDING)
    PaymentEventFactory(order=order)
    fields = {"event_id": "e", "order_no": "o", "amount": "1.00", "currency": "CNY", "kind": "paid"}
    server = _trip_with_a_hanging_provider(settings, fields)
    try:
        with pytest.raises(PaymentUnavailable):
            payment_refund_request(order_id=order.id)
    finally:
        server.__exit__(None, None, None)
    sandbox_sent.assert_not_called()
    order.refresh_from_db()
    assert order.status == Order.Status.REFUND_PENDING


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_refusal_is_translated(client, settings, language):
    order, token = OrderFactory.create_with_token()
    fields = {"event_id": "e", "order_no": "o", "amount": "1.00", "currency": "CNY", "kind": "paid"}
    server = _trip_with_a_hanging_provider(settings, fields)
    try:
        api = client.post(
            f"/api/v1/payments/sandbox/{order.order_no}/pay", HTTP_X_ORDER_TOKEN=token, HTTP_ACCEPT_LANGUAGE=language
        )
        page = client.post(f"/pay/sandbox/{order.order_no}?token={token}", {"pay": "1"}, HTTP_ACCEPT_LANGUAGE=language)
    finally:
        server.__exit__(None, None, None)
    with translation.override(language):
        expected = gettext(UNAVAILABLE)
    assert api.json() == {"error": "payment_unavailable", "detail": expected}
    assert expected in page.content.decode()
    assert f'lang="{language}"' in page.content.decode()
