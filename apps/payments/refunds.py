"""Asking a provider to refund an order's payment. Apart from services.py
(which applies notifications to orders), so the refund task it serves needs
nothing of the order services that publish it."""

from .breaker import provider_call
from .providers import provider_get
from .selectors import payment_refundable_get


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

        order_mark_refunded(order_no=refunded.order_no, provider=provider.name, event_id=refunded.event_id)
    return True
