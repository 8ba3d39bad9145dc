"""What a notification says, built from the order or product it is about.

Every message is built in the shop's language (LANGUAGE_CODE: the merchant's
side) and never holds a key secret: the merchant sees order facts, the keys
stay on the buyer's order page and in the buyer's mail (P5)."""

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from apps.catalog.models import Product
from apps.orders.models import Order


@dataclass(frozen=True)
class MessageField:
    """One fact of a message: `name` is its stable key in the webhook's JSON,
    `label` what email and Telegram show before `value`."""

    name: str
    label: str
    value: str


@dataclass(frozen=True)
class Message:
    title: str
    fields: list[MessageField]

    def text(self) -> str:
        return "\n".join([self.title, *(f"{f.label}: {f.value}" for f in self.fields)])

    def data(self) -> dict[str, str]:
        return {f.name: f.value for f in self.fields}


def order_paid_message(*, order: Order) -> Message:
    """The merchant's message for a paid order: number, product, quantity,
    amount and the buyer's email. The buyer's custom input fields belong here
    too: append one MessageField each (name `field_<name>`, the merchant's
    label, the decrypted value). Never add the order's keys."""
    with translation.override(settings.LANGUAGE_CODE):
        fields = [
            MessageField("order_no", _("Order number"), order.order_no),
            MessageField("sku", _("SKU"), order.product.sku),
            MessageField("product", _("Product"), order.product.title),
            MessageField("quantity", _("Quantity"), str(order.quantity)),
            MessageField("amount", _("Amount"), str(order.amount)),
            MessageField("currency", _("Currency"), order.currency),
            MessageField("buyer_email", _("Buyer email"), order.buyer_email),
            MessageField("paid_at", _("Paid at"), _when(order.paid_at)),
        ]
        return Message(title=_("New paid order %(order_no)s") % {"order_no": order.order_no}, fields=fields)


def low_stock_message(*, product: Product, available: int, threshold: int) -> Message:
    with translation.override(settings.LANGUAGE_CODE):
        fields = [
            MessageField("sku", _("SKU"), product.sku),
            MessageField("product", _("Product"), product.title),
            MessageField("available", _("Available keys"), str(available)),
            MessageField("threshold", _("Threshold"), str(threshold)),
        ]
        return Message(
            title=_("Low stock: %(product)s has %(available)d keys left")
            % {"product": product.title, "available": available},
            fields=fields,
        )


def _when(moment) -> str:
    if moment is None:
        return ""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
