"""Manual delivery: a paid order of a manual-delivery product waits for the
merchant (fulfilment leaves it alone), who enters what was delivered; the
order becomes delivered once, and its buyer gets the usual delivery mail and
order page, showing that text instead of keys. The pool is never touched:
the product's stock number pays for it, in the same transaction.

A manual order waiting longer than MANUAL_DELIVERY_SLA_HOURS is overdue:
reconciliation reports it, the admin's dashboard counts it and the metric
cardshop_manual_delivery_overdue_orders raises an alert (P3: paid means
delivered, or visibly not)."""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.cardkeys.crypto import encrypt_secret
from apps.catalog.models import Product

from ..exceptions import InvalidInput, OrderNotAwaitingManualDelivery, OrderNotFound, StockShort
from ..models import Order

# The module, not its names: fulfilment and the tasks module import each other.
from . import fulfilment

Status = Order.Status


@dataclass(frozen=True)
class ManualDelivery:
    order: Order
    # False when the order was delivered already (by an earlier or a concurrent
    # call): nothing changed and no second mail goes out.
    delivered_now: bool


@transaction.atomic(durable=True)
def order_deliver_manually(*, order_id: int, content: str, by_user) -> ManualDelivery:
    """Deliver a paid order of a manual-delivery product with the merchant's
    `content` (stored encrypted on the order), once: a second call, also a
    concurrent one (it waits for the order's row lock), finds it delivered
    and changes nothing. Takes the order's quantity from the product's stock
    number under the product row's lock (after the order's, as fulfilment
    does). After commit: the gate's reservation ends and the delivery mail
    is queued (apps/orders/mail.py sends it at most once).
    Raises InvalidInput (empty or too long content), OrderNotFound,
    OrderNotAwaitingManualDelivery, StockShort."""
    # A browser's textarea sends CRLF line ends; the mail and the page want one kind.
    text = (content or "").replace("\r\n", "\n").strip()
    if not text:
        raise InvalidInput(fields={"content": [_("Enter what was delivered.")]})
    if len(text) > settings.MANUAL_DELIVERY_MAX_CHARS:
        raise InvalidInput(
            fields={"content": [_("At most %(max)d characters.") % {"max": settings.MANUAL_DELIVERY_MAX_CHARS}]}
        )
    order = Order.objects.select_for_update().filter(id=order_id).first()
    if order is None:
        raise OrderNotFound()
    if order.status == Status.DELIVERED and order.manual_content_encrypted:
        return ManualDelivery(order=order, delivered_now=False)
    product = Product.objects.select_for_update().only("id", "delivery_kind", "stock_quantity").get(id=order.product_id)
    if order.status != Status.PAID or product.delivery_kind != Product.Delivery.MANUAL:
        raise OrderNotAwaitingManualDelivery()
    if product.stock_quantity < order.quantity:
        raise StockShort()
    Product.objects.filter(id=product.id).update(stock_quantity=F("stock_quantity") - order.quantity)
    order.status = Status.DELIVERED
    order.delivered_at = timezone.now()
    order.manual_content_encrypted = encrypt_secret(text)
    order.manually_delivered_by = by_user if getattr(by_user, "pk", None) else None
    order.save(
        update_fields=["status", "delivered_at", "manual_content_encrypted", "manually_delivered_by", "updated_at"]
    )
    transaction.on_commit(lambda: fulfilment.after_delivery_rollback_unsafe([order], []))
    return ManualDelivery(order=order, delivered_now=True)
