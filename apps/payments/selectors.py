import time

from django.conf import settings

from apps.orders.models import Order

from .exceptions import UnknownProvider
from .labels import payment_method_label as default_method_label
from .models import PaymentEvent, PaymentMethodChoice
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
    """The methods buyers may choose for an order in `currency`: those of the
    enabled providers (PAYMENT_PROVIDERS) that take that currency (epay,
    Alipay, WeChat Pay: CNY only), less those the merchant hid, in the
    merchant's order (PaymentMethodChoice), then in PAYMENT_PROVIDERS order."""
    available = []
    for name in settings.PAYMENT_PROVIDERS:
        try:
            provider = provider_get(name=name)
        except UnknownProvider:
            continue  # refused at start in production; tolerated on a laptop
        if provider.takes_currency(currency):
            available += provider.methods()
    choices = {choice.method: choice for choice in payment_method_choices()}
    shown = [m for m in available if m not in choices or choices[m].enabled]
    placed = {m: index for index, m in enumerate(choices)}
    return sorted(shown, key=lambda m: (m not in placed, placed.get(m, 0), available.index(m)))


def payment_method_label(method: str) -> str:
    """The merchant's label for the method, else its default one."""
    for choice in payment_method_choices():
        if choice.method == method and choice.label:
            return choice.label
    return default_method_label(method)


def payment_method_choices() -> list[PaymentMethodChoice]:
    """The merchant's method rows, in their order. Kept for half a minute in
    each process: the order page and its status poll read them on every
    request, and a merchant's change may take that long to show."""
    global _choices, _choices_read_at
    if _choices is None or time.monotonic() - _choices_read_at > _CHOICES_SECONDS:
        _choices, _choices_read_at = list(PaymentMethodChoice.objects.all()), time.monotonic()
    return _choices


def payment_method_choices_forget() -> None:
    """Read them again at the next call (the admin saved a change)."""
    global _choices
    _choices = None


_CHOICES_SECONDS = 30.0
_choices: list[PaymentMethodChoice] | None = None
_choices_read_at = 0.0


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
