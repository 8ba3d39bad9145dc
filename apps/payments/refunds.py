"""Asking providers to refund an order's payment, or to close its open one.
Apart from services.py (which applies notifications to orders), so the tasks
it serves need nothing of the order services that publish them."""

from django.conf import settings

from .breaker import provider_call
from .providers import provider_get
from .selectors import payment_extra_refundable_get, payment_refundable_get


def payment_refund_request(*, order_id: int) -> bool:
    """Ask the provider that took the order's payment to refund it; the order
    becomes `refunded` when the provider's notification arrives, or at once
    for a provider whose refunds are synchronous (epay). Returns False,
    doing nothing, unless the order is refund_pending with a recorded payment
    (so a task run twice, or after the refund, is harmless). Raises
    PaymentUnavailable while the provider is failing; the task retries."""
    payment = payment_refundable_get(order_id=order_id)
    if payment is None:
        return False
    _refund(payment)
    return True


def payment_close_all(*, order_no: str) -> None:
    """Close the order's open payment at every enabled provider (each closes
    only what it has open). Raises PaymentUnavailable while one is failing;
    the task retries, and closing twice is harmless."""
    for name in settings.PAYMENT_PROVIDERS:
        provider_call(provider_get(name=name), "payment_close", order_no=order_no)


def payment_refund_request_for_event(*, event_pk: int) -> bool:
    """Ask the provider that took this one payment (an extra payment of an
    overpaid order) to refund it, whole. Returns False, doing nothing, when
    it is no payment or its refund is already recorded (a task run twice).
    Raises PaymentUnavailable while the provider is failing; the task retries."""
    payment = payment_extra_refundable_get(event_pk=event_pk)
    if payment is None:
        return False
    _refund(payment)
    return True


def _refund(payment) -> None:
    """Refund the whole of one payment through the provider that took it."""
    provider = provider_get(name=payment.provider)
    refunded = provider_call(
        provider,
        "refund_start",
        order_no=payment.order.order_no,
        event_id=payment.event_id,
        amount=payment.amount,
        currency=payment.currency,
    )
    if refunded is not None:
        # A synchronous refund (epay sends no refund notification): record it
        # now, through the same path a refund notification takes.
        # Imported here: apps.orders.services.payment imports this module's
        # task module (payments.tasks -> refunds), a real cycle.
        from apps.orders.services.payment import order_mark_refunded

        order_mark_refunded(
            order_no=refunded.order_no,
            provider=provider.name,
            event_id=refunded.event_id,
            amount=refunded.amount,
            currency=refunded.currency,
            payment_event_id=payment.event_id,
        )
