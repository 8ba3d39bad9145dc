"""Order reads for buyers. Orders are read from the primary: a buyer polling
right after paying must see the write just made."""

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from redis.exceptions import RedisError

from apps.cardkeys.crypto import decrypt_secret
from apps.cardkeys.selectors import order_keys_reveal
from apps.catalog.models import Product
from apps.payments.selectors import payment_methods_offered
from apps.stock.selectors import stock_reservation_get

from .identity import access_token_hash, access_token_verify, email_normalise, order_number_product_id
from .models import Order
from .pricing import order_amount


def _token_matches(token: str, stored_hash: str) -> bool:
    if not isinstance(token, str) or not token:
        return False
    return hmac.compare_digest(access_token_hash(token), stored_hash)


def order_find_for_lookup(*, order_no: str, email: str) -> Order | None:
    order = Order.objects.using("default").filter(order_no=(order_no or "").strip()).first()
    if order is None or not hmac.compare_digest(order.buyer_email, email_normalise(email or "")):
        return None
    return order


def order_snapshot_get(*, order_no: str, token: str) -> dict | None:
    """What the buyer may see of an order (the JSON API body), or None for an
    unknown order or a wrong token. A reservation not yet written to MariaDB
    answers as `queued` from Redis."""
    order = Order.objects.using("default").select_related("product").filter(order_no=order_no).first()
    if order is not None:
        if not _token_matches(token, order.access_token_hash):
            return None
        return order_snapshot(order)
    return _queued_snapshot(order_no=order_no, token=token)


def order_lost(*, order_no: str, token: str) -> bool:
    """Was this order answered 202 and then lost before it reached MariaDB?
    True when the token is the one the shop issued for this number (it is
    computed from the number, so nothing needs storing) and neither MariaDB
    nor the gate knows the order. A made-up number or a wrong token is False,
    and so is every order when Redis cannot be asked. Call it only after
    order_snapshot_get found nothing."""
    product_id = order_number_product_id(order_no)
    if product_id is None or not access_token_verify(order_no=order_no, token=token):
        return False
    try:
        if stock_reservation_get(product_id=product_id, order_no=order_no) is not None:
            return False
    except RedisError:
        return False
    # Persisted between the caller's look and the gate's: the row is there now.
    return not Order.objects.using("default").filter(order_no=order_no).exists()


def order_snapshot(order: Order) -> dict:
    snapshot = {
        "order_no": order.order_no,
        "status": order.status,
        "sku": order.product.sku,
        "title": order.product.title,
        "quantity": order.quantity,
        "amount": str(order.amount),
        "currency": order.currency,
        # Until when the order can be paid (its reservation's end); None once it cannot.
        "pay_deadline": _iso(order.reserved_until) if order.status == Order.Status.AWAITING_PAYMENT else None,
        "payment_methods": (
            payment_methods_offered(currency=order.currency) if order.status == Order.Status.AWAITING_PAYMENT else []
        ),
    }
    # How the order is delivered: the page says "keys on the way" or "the merchant delivers by hand".
    snapshot["delivery"] = order.product.delivery_kind
    if order.status == Order.Status.DELIVERED:
        delivery = order_delivery_reveal(order)
        snapshot["keys"] = delivery.keys
        if delivery.content:
            snapshot["delivered_content"] = delivery.content
    return snapshot


@dataclass(frozen=True)
class OrderDelivery:
    """What a delivered order's buyer gets: keys (of the pool, or the
    product's reusable key), or the text of a manual delivery."""

    keys: list[str]
    content: str = ""


def order_delivery_reveal(order: Order) -> OrderDelivery:
    """The plaintext of what a delivered order received, for its buyer only
    (the order page, the API, the mail). Callers have checked the buyer's
    access; never log the result."""
    if order.manual_content_encrypted:
        return OrderDelivery(keys=[], content=decrypt_secret(order.manual_content_encrypted))
    if order.reusable_key_encrypted:
        # One key, however many pieces: every buyer shares the same one.
        return OrderDelivery(keys=[decrypt_secret(order.reusable_key_encrypted)])
    return OrderDelivery(keys=order_keys_reveal(order_id=order.id))


def _queued_snapshot(*, order_no: str, token: str) -> dict | None:
    product_id = order_number_product_id(order_no)
    if product_id is None:
        return None
    try:
        reservation = stock_reservation_get(product_id=product_id, order_no=order_no)
    except RedisError:
        return None
    if reservation is None or not _token_matches(token, reservation.token_hash):
        return None
    product = Product.objects.using("default").filter(id=product_id).only("sku", "title").first()
    return {
        "order_no": order_no,
        "status": Order.Status.QUEUED,
        "sku": product.sku if product else "",
        "title": product.title if product else "",
        "quantity": reservation.quantity,
        "amount": str(order_amount(unit_price=reservation.price, quantity=reservation.quantity)),
        "currency": reservation.currency,
        "pay_deadline": _iso(datetime.fromtimestamp(reservation.reserved_until, tz=UTC)),
        "payment_methods": payment_methods_offered(currency=reservation.currency),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def orders_awaiting_manual_delivery() -> QuerySet[Order]:
    """Paid orders of manual-delivery products, oldest first: the merchant's queue."""
    return Order.objects.filter(status=Order.Status.PAID, product__delivery_kind=Product.Delivery.MANUAL).order_by(
        "paid_at", "id"
    )


def manual_delivery_overdue_cutoff():
    """Paid before this, a manual order is overdue."""
    return timezone.now() - timezone.timedelta(hours=settings.MANUAL_DELIVERY_SLA_HOURS)


def orders_manual_delivery_overdue() -> QuerySet[Order]:
    return orders_awaiting_manual_delivery().filter(paid_at__lt=manual_delivery_overdue_cutoff())
