"""Order reads for buyers. Orders are read from the primary: a buyer polling
right after paying must see the write just made."""

import hmac
from datetime import UTC, datetime

from redis.exceptions import RedisError

from apps.cardkeys.selectors import order_keys_reveal
from apps.catalog.models import Product
from apps.payments.selectors import payment_methods_offered
from apps.stock.selectors import stock_reservation_get

from .identity import access_token_hash, access_token_verify, email_normalise, order_number_product_id
from .models import Order
from .pricing import reservation_price


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
        "coupon": order.coupon_code or None,
        "discount": str(order.discount),
        # Until when the order can be paid (its reservation's end); None once it cannot.
        "pay_deadline": _iso(order.reserved_until) if order.status == Order.Status.AWAITING_PAYMENT else None,
        "payment_methods": (
            payment_methods_offered(currency=order.currency) if order.status == Order.Status.AWAITING_PAYMENT else []
        ),
    }
    if order.status == Order.Status.DELIVERED:
        snapshot["keys"] = order_keys_reveal(order_id=order.id)
    return snapshot


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
    price = reservation_price(reservation)
    return {
        "order_no": order_no,
        "status": Order.Status.QUEUED,
        "sku": product.sku if product else "",
        "title": product.title if product else "",
        "quantity": reservation.quantity,
        "amount": str(price.amount),
        "currency": reservation.currency,
        "coupon": reservation.coupon_code or None,
        "discount": str(price.discount),
        "pay_deadline": _iso(datetime.fromtimestamp(reservation.reserved_until, tz=UTC)),
        "payment_methods": payment_methods_offered(currency=reservation.currency),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
