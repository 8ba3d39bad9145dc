from apps.orders.models import Order

from .models import PaymentEvent


def payment_refundable_get(*, order_id: int) -> PaymentEvent | None:
    """The payment to refund of an order waiting for its refund, else None."""
    return (
        PaymentEvent.objects.select_related("order")
        .filter(order_id=order_id, order__status=Order.Status.REFUND_PENDING, kind=PaymentEvent.Kind.PAID)
        .order_by("id")
        .first()
    )


def payment_extra_refundable_get(*, event_pk: int) -> PaymentEvent | None:
    """The payment `event_pk`, unless it is no payment or a refund naming it is recorded."""
    payment = PaymentEvent.objects.select_related("order").filter(pk=event_pk, kind=PaymentEvent.Kind.PAID).first()
    if payment is None:
        return None
    refunded = PaymentEvent.objects.filter(
        order_id=payment.order_id,
        kind=PaymentEvent.Kind.REFUNDED,
        provider=payment.provider,
        refunds_event_id=payment.event_id,
    ).exists()
    return None if refunded else payment
