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
