"""Helpers of the Stripe provider's tests: an order's snapshot, a started session, a signed delivery."""

from datetime import timedelta

from django.utils import timezone

from apps.orders.models import Order
from apps.payments import services
from apps.payments.models import PaymentEvent

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
