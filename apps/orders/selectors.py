"""Order reads for buyers, and the revenue figures the admin shows.

Buyers' lookups (the order page, its poll, the API, "my orders") may be
answered by the read replica, but only for settled orders
(SETTLED_STATUSES): an order the replica does not have yet, or has in a state
that is still moving (queued, awaiting payment, paid, ...), is read again
from the primary, so the poll right after checkout never says "not found"
and the one right after payment never shows the order unpaid
(docs/database-replica.md). Everything else reads the primary."""

import hmac
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone
from redis.exceptions import RedisError

from apps.cardkeys.crypto import decrypt_secret
from apps.cardkeys.selectors import order_keys_reveal
from apps.catalog.models import Product
from apps.catalog.selectors import in_active_language
from apps.payments.selectors import payment_methods_offered
from apps.stock.selectors import stock_reservation_get
from cardshop.db_router import replica_or_primary

from .identity import access_token_hash, access_token_verify, email_normalise, order_number_product_id
from .models import Order
from .pricing import reservation_price
from .status_records import OrderStatusRecord


def _token_matches(token: str, stored_hash: str) -> bool:
    if not isinstance(token, str) or not token:
        return False
    return hmac.compare_digest(access_token_hash(token), stored_hash)


def _email_matches(stored: str, given: str) -> bool:
    """Whether `given` (typed at the lookup, or kept by a grant) names the
    mailbox of an order's address as typed at checkout: both normalised, as
    the limits count them ("Bob+shop@Example.com" is bob@example.com)."""
    return hmac.compare_digest(email_normalise(stored).encode(), email_normalise(given or "").encode())


# States an order does not leave within seconds by itself (a refund of a
# delivered order is the exception, and it is an operator's act): a replica
# row in one of them is as good as the primary's, give or take the lag.
# Not expired or cancelled: a payment that arrives late moves them to paid,
# delivered or refund_pending (design.md, step 7), and the buyer polls for it.
SETTLED_STATUSES = frozenset({Order.Status.DELIVERED, Order.Status.REFUNDED})


def _orders_by_number(numbers: set[str]) -> dict[str, Order]:
    """The orders with these numbers (with their products): settled ones from
    the replica when it may serve this request, the rest from the primary.
    One query when every order is settled or no replica serves, two otherwise."""
    orders: dict[str, Order] = {}
    if not numbers:
        return orders
    # Unordered (the model orders by -id): the rows land in a dict, and
    # compiling the ORDER BY was a third of this query's cost on every
    # order-status poll and payment (issue 15's profile of the web tier).
    found = Order.objects.select_related("product").order_by()
    if settings.REPLICA_ENABLED and replica_or_primary() == "replica":
        for order in found.using("replica").filter(order_no__in=numbers):
            if order.status in SETTLED_STATUSES:
                orders[order.order_no] = order
    rest = numbers - orders.keys()
    if rest:
        for order in found.using("default").filter(order_no__in=rest):
            orders[order.order_no] = order
    return orders


def order_find_for_lookup(*, order_no: str, email: str) -> Order | None:
    order_no = (order_no or "").strip()
    order = _orders_by_number({order_no}).get(order_no)
    if order is None or not _email_matches(order.buyer_email, email):
        return None
    return order


def order_snapshot_get(*, order_no: str, token: str) -> dict | None:
    """What the buyer may see of an order (the JSON API body), or None for an
    unknown order or a wrong token. A reservation not yet written to MariaDB
    answers as `queued` from Redis."""
    read = order_buyer_read(order_no=order_no, token=token)
    return read.snapshot if read is not None else None


@dataclass(frozen=True)
class BuyerOrderRead:
    """An order as its token holder sees it, and the status record a poll may
    store for it (apps.orders.status_records)."""

    snapshot: dict
    # None for a queued order (its truth is the gate's) and for a row read from
    # the replica (it may be older than a drop that already happened).
    record: OrderStatusRecord | None


def order_buyer_read(*, order_no: str, token: str) -> BuyerOrderRead | None:
    """order_snapshot_get, with the order's status record."""
    order = _orders_by_number({order_no}).get(order_no)
    if order is not None:
        if not _token_matches(token, order.access_token_hash):
            return None
        return BuyerOrderRead(snapshot=order_snapshot(order), record=order_status_record(order))
    snapshot = _queued_snapshot(order_no=order_no, token=token)
    return BuyerOrderRead(snapshot=snapshot, record=None) if snapshot is not None else None


def order_status_record(order: Order) -> OrderStatusRecord | None:
    """The order's status record, if this row may be one: read from the
    primary, and past the gate's queued stage."""
    if order._state.db != "default" or order.status == Order.Status.QUEUED:
        return None
    return OrderStatusRecord(
        order_no=order.order_no,
        status=order.status,
        token_hash=order.access_token_hash,
        placed_at=order.created_at.timestamp(),
        manual=order.product.delivery_kind == Product.Delivery.MANUAL,
    )


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


def orders_for_grants(*, tokens: dict[str, str], emails: dict[str, str]) -> list[Order]:
    """The orders that an access token (order number -> token) or a lookup's
    email (order number -> normalised email) opens, newest first, in one
    query. Orders still queued in the gate (not yet in MariaDB) are not
    among them: they reach MariaDB within milliseconds."""
    numbers = set(tokens) | set(emails)
    if not numbers:
        return []
    orders = _orders_by_number(numbers).values()
    return sorted(
        (
            order
            for order in orders
            if _token_matches(tokens.get(order.order_no, ""), order.access_token_hash)
            or (order.order_no in emails and _email_matches(order.buyer_email, emails[order.order_no]))
        ),
        key=lambda order: (order.created_at, order.id),
        reverse=True,
    )


# --- Revenue (the admin's dashboards)

# Orders whose money the shop keeps: paid, and paid and delivered. Refunded
# and refund-pending orders are out, and so is an order stuck in
# needs_attention until it is delivered or refunded.
REVENUE_STATUSES = (Order.Status.PAID, Order.Status.DELIVERED)
REVENUE_DAYS = 7


@dataclass(frozen=True)
class RevenueWindows:
    """Where "today" and "the last 7 days" begin: midnights in the shop's
    timezone (settings.TIME_ZONE), whatever timezone the viewer is in."""

    today: date
    today_start: datetime
    week_start: datetime


@dataclass(frozen=True)
class Revenue:
    """Money taken in one currency (amounts are never added across currencies)."""

    currency: str
    today: Decimal
    last_7_days: Decimal
    orders_today: int
    orders_last_7_days: int


@dataclass(frozen=True)
class ProductRevenue(Revenue):
    product_id: int
    sku: str
    title: str


def revenue_windows(*, now: datetime | None = None) -> RevenueWindows:
    shop_tz = timezone.get_default_timezone()
    today = timezone.localtime(now or timezone.now(), shop_tz).date()
    return RevenueWindows(
        today=today,
        today_start=datetime.combine(today, time.min, tzinfo=shop_tz),
        week_start=datetime.combine(today - timedelta(days=REVENUE_DAYS - 1), time.min, tzinfo=shop_tz),
    )


def _revenue_rows(*, windows: RevenueWindows, group_by: tuple[str, ...], product_id: int | None = None):
    """Sums computed by MariaDB (DECIMAL arithmetic), one row per group and
    currency, over the orders paid since the week's first midnight."""
    orders = Order.objects.filter(status__in=REVENUE_STATUSES, paid_at__gte=windows.week_start)
    if product_id is not None:
        orders = orders.filter(product_id=product_id)
    is_today = Q(paid_at__gte=windows.today_start)
    return (
        orders.values(*group_by, "currency")
        .annotate(
            today=Sum("amount", filter=is_today, default=Decimal("0.00")),
            last_7_days=Sum("amount", default=Decimal("0.00")),
            orders_today=Count("id", filter=is_today),
            orders_last_7_days=Count("id"),
        )
        .order_by(*group_by, "currency")
    )


def revenue_summary(*, now: datetime | None = None, product_id: int | None = None) -> list[Revenue]:
    """Revenue today and over the last 7 days (today included), per currency;
    of one product when product_id is given. No sales: an empty list."""
    rows = _revenue_rows(windows=revenue_windows(now=now), group_by=(), product_id=product_id)
    return [Revenue(**row) for row in rows]


def revenue_by_product(*, now: datetime | None = None) -> list[ProductRevenue]:
    """Revenue per product and currency, the best-selling of the last 7 days first."""
    rows = _revenue_rows(
        windows=revenue_windows(now=now),
        group_by=("product_id", "product__sku", "product__title_zh_hans", "product__title_en"),
    )
    figures = [
        ProductRevenue(
            product_id=row.pop("product_id"),
            sku=row.pop("product__sku"),
            # The viewer's language (the titles have one column each).
            title=in_active_language(row.pop("product__title_zh_hans"), row.pop("product__title_en")),
            **row,
        )
        for row in rows
    ]
    return sorted(figures, key=lambda f: (f.currency, -f.last_7_days, f.sku))


def paid_orders_to_fulfil() -> QuerySet[Order]:
    """Paid orders that fulfilment serves: all but those of manual-delivery
    products, which wait for the merchant. The one definition of the
    fulfilment backlog (fulfilment, re-drive, the overload check, the
    backlog gauge, the sale dashboard). The product ids are read first (a
    join would lock product rows along with the orders when a caller locks)."""
    manual = Product.objects.using("default").filter(delivery_kind=Product.Delivery.MANUAL).values_list("id", flat=True)
    return Order.objects.filter(status=Order.Status.PAID).exclude(product_id__in=list(manual))


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
