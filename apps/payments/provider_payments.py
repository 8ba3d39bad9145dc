"""The payments opened at providers for an order (ProviderPayment): written
when a provider opens one, read when the shop asks about or closes them."""

from .models import ProviderPayment


def provider_payment_record(*, order_no: str, provider: str, reference: str) -> ProviderPayment:
    """Remember a payment the provider opened (idempotent on the reference)."""
    payment, _created = ProviderPayment.objects.get_or_create(
        provider=provider, reference=reference, defaults={"order_no": order_no}
    )
    return payment


def provider_payment_references(*, order_no: str, provider: str) -> list[str]:
    """The provider's references of the order's payments, newest first."""
    return list(
        ProviderPayment.objects.filter(order_no=order_no, provider=provider)
        .order_by("-id")
        .values_list("reference", flat=True)
    )


def provider_payment_providers(*, order_no: str) -> list[str]:
    """The providers the order's payments were started with, first started first."""
    names = ProviderPayment.objects.filter(order_no=order_no).order_by("id").values_list("provider", flat=True)
    return list(dict.fromkeys(names))


def orders_with_started_payments():
    """The order numbers with a payment started at a provider (a subquery)."""
    return ProviderPayment.objects.values("order_no")
