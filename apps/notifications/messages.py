"""What a notification says, built from the order or product it is about.

Every message is built in the shop's language (LANGUAGE_CODE: the merchant's
side) and never holds a key secret: the merchant sees order facts, the keys
stay on the buyer's order page and in the buyer's mail (P5)."""

import json
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from apps.cardkeys.crypto import decrypt_secret, encrypt_secret
from apps.catalog.models import Product
from apps.orders.input_fields import order_input_entries
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
    # What the buyer typed in the product's checkout fields: sent like the
    # other fields, but stored only sealed (the order keeps them encrypted, so
    # the delivery record does too: Delivery.buyer_input_sealed).
    sealed_fields: list[MessageField] = field(default_factory=list)

    def text(self) -> str:
        """The stored text: without the sealed fields."""
        return _text(self.title, self.fields)

    def data(self) -> dict[str, str]:
        """The stored webhook data: without the sealed fields."""
        return {f.name: f.value for f in self.fields}

    def sealed(self) -> str:
        if not self.sealed_fields:
            return ""
        return encrypt_secret(json.dumps([[f.name, f.label, f.value] for f in self.sealed_fields], ensure_ascii=False))


def _text(title: str, fields: list[MessageField]) -> str:
    return "\n".join([title, *(f"{f.label}: {f.value}" for f in fields)])


def _unsealed(delivery) -> list[MessageField]:
    if not delivery.buyer_input_sealed:
        return []
    return [MessageField(*item) for item in json.loads(decrypt_secret(delivery.buyer_input_sealed))]


def delivery_text(delivery) -> str:
    """What email and Telegram send: the stored text and the sealed fields."""
    return "\n".join([delivery.text, *(f"{f.label}: {f.value}" for f in _unsealed(delivery))])


def delivery_payload(delivery) -> dict:
    """What the webhook posts: the stored payload, its data with the sealed fields."""
    extra = {f.name: f.value for f in _unsealed(delivery)}
    return {**delivery.payload, "data": {**delivery.payload["data"], **extra}} if extra else delivery.payload


def order_paid_message(*, order: Order) -> Message:
    """The merchant's message for a paid order: number, product, quantity,
    amount, the buyer's email, and what the buyer typed in the product's
    checkout fields (`field_<key>`, under the merchant's label: the merchant
    needs the account id to serve a top-up). Never the order's keys."""
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
        return Message(
            title=_("New paid order %(order_no)s") % {"order_no": order.order_no},
            fields=fields,
            sealed_fields=[
                MessageField(f"field_{key}", label, value) for key, label, value in order_input_entries(order)
            ],
        )


def low_stock_message(*, product: Product, available: int, threshold: int) -> Message:
    """`available` is what the product's kind counts: keys in the pool, or
    the stock number of a reusable-key or manual product."""
    with translation.override(settings.LANGUAGE_CODE):
        if product.sells_from_pool:
            label = _("Available keys")
            title = _("Low stock: %(product)s has %(available)d keys left")
        else:
            label = _("Stock number")
            title = _("Low stock: %(product)s has %(available)d units left")
        fields = [
            MessageField("sku", _("SKU"), product.sku),
            MessageField("product", _("Product"), product.title),
            MessageField("available", label, str(available)),
            MessageField("threshold", _("Threshold"), str(threshold)),
        ]
        return Message(title=title % {"product": product.title, "available": available}, fields=fields)


def _when(moment) -> str:
    if moment is None:
        return ""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
