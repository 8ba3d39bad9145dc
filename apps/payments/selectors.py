from django.conf import settings

from apps.orders.models import Order

from .exceptions import UnknownProvider
from .models import PaymentEvent
from .providers import provider_get


def payment_refundable_get(*, order_id: int) -> PaymentEvent | None:
    """The payment to refund of an order waiting for its refund, else None."""
    return (
        PaymentEvent.objects.select_related("order")
        .filter(order_id=order_id, order__status=Order.Status.REFUND_PENDING, kind=PaymentEvent.Kind.PAID)
        .order_by("id")
        .first()
    )


def payment_methods_offered(*, currency: str) -> list[str]:
    """The methods buyers may choose for an order in `currency`: every enabled
    provider's, in PAYMENT_PROVIDERS order, but those of a provider that does
    not take that currency (epay, Alipay, WeChat Pay: CNY only)."""
    methods = []
    for name in settings.PAYMENT_PROVIDERS:
        try:
            provider = provider_get(name=name)
        except UnknownProvider:
            continue  # refused at start in production; tolerated on a laptop
        if provider.takes_currency(currency):
            methods += provider.methods()
    return methods


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
