"""Figures for the admin's live sale dashboard: one product, the last
WINDOW_MINUTES minutes, by minute. Read from MariaDB (the record: orders and
their times) plus the stock counter in Redis; three grouped queries over the
product's orders in the window."""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Avg, Count, FloatField, Max, Q, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from apps.catalog.models import Product
from apps.catalog.templatetags.shop import money
from apps.orders.models import Order
from apps.orders.selectors import Revenue, paid_orders_to_fulfil, revenue_by_product, revenue_summary, revenue_windows
from apps.stock.selectors import stock_remaining

from .axes import nice_ticks, shop_clock, time_ticks

WINDOW_MINUTES = 30
REFRESH_SECONDS = 5
# Products listed in the admin home's revenue table (best sellers first).
REVENUE_PRODUCTS_SHOWN = 20

Status = Order.Status
# Orders whose keys are taken from stock (the rest gave theirs back or never held any).
TAKING = (Status.AWAITING_PAYMENT, Status.PAID, Status.DELIVERED, Status.NEEDS_ATTENTION)
# Paid orders that did not get their keys.
FAILED = (Status.NEEDS_ATTENTION, Status.REFUND_PENDING, Status.REFUNDED)


def _minute_of(column: str, start: datetime) -> RawSQL:
    # MariaDB stores UTC; the window start goes in as naive UTC to match.
    start_utc = start.astimezone(UTC).replace(tzinfo=None)
    return RawSQL(f"TIMESTAMPDIFF(MINUTE, %s, `{column}`)", (start_utc,))


def _by_minute(queryset, column: str, start: datetime, **aggregates) -> dict[int, dict]:
    rows = (
        queryset.filter(**{f"{column}__gte": start})
        .annotate(minute=_minute_of(column, start))
        .values("minute")
        .annotate(**aggregates)
        .order_by()
    )
    return {int(row.pop("minute")): row for row in rows}


def sale_dashboard_figures(*, product: Product, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=WINDOW_MINUTES - 1)
    orders = Order.objects.using("default").filter(product_id=product.id)
    seconds = RawSQL("TIMESTAMPDIFF(MICROSECOND, `paid_at`, `delivered_at`) / 1000000", (), output_field=FloatField())

    created = _by_minute(orders, "created_at", start, n=Count("id"), taken=Sum("quantity", filter=Q(status__in=TAKING)))
    paid = _by_minute(
        orders,
        "paid_at",
        start,
        delivered=Count("id", filter=Q(status=Status.DELIVERED)),
        failed=Count("id", filter=Q(status__in=FAILED)),
    )
    delivered = _by_minute(
        orders.filter(paid_at__isnull=False), "delivered_at", start, avg=Avg(seconds), slowest=Max(seconds)
    )
    minutes = range(WINDOW_MINUTES)
    stock_now = stock_remaining(product_id=product.id)
    revenue = revenue_summary(now=now, product_id=product.id)
    moments = [start + timedelta(minutes=m) for m in minutes]

    # Stock at the end of each minute: what is left now plus what was taken after it.
    stock_left: list[int | None] = []
    taken_after = 0
    for minute in reversed(minutes):
        stock_left.append(None if stock_now is None else stock_now + taken_after)
        taken_after += created.get(minute, {}).get("taken") or 0
    stock_left.reverse()

    def rate(row: dict | None) -> float | None:
        settled = (row or {}).get("delivered", 0) + (row or {}).get("failed", 0)
        return round(100.0 * row["delivered"] / settled, 1) if settled else None

    orders_per_minute = [created.get(m, {}).get("n", 0) for m in minutes]
    success_rate = [rate(paid.get(m)) for m in minutes]
    paid_to_keys_avg = [_round(delivered.get(m, {}).get("avg")) for m in minutes]
    paid_to_keys_max = [_round(delivered.get(m, {}).get("slowest")) for m in minutes]
    window_delivered = sum(r["delivered"] for r in paid.values())
    window_settled = window_delivered + sum(r["failed"] for r in paid.values())
    return {
        "product": {"id": product.id, "sku": product.sku, "title": product.title},
        "refresh_seconds": REFRESH_SECONDS,
        # Times as the shop's clock shows them, and the round minutes that get a label.
        "timezone": settings.TIME_ZONE,
        "minutes": [shop_clock(moment) for moment in moments],
        "minute_ticks": time_ticks(moments),
        "updated": shop_clock(now, "%H:%M:%S"),
        "stock_left": stock_left,
        "orders_per_minute": orders_per_minute,
        "success_rate": success_rate,
        "paid_to_keys_avg": paid_to_keys_avg,
        "paid_to_keys_max": paid_to_keys_max,
        # Each chart's value axis, from 0 up in round steps (apps.monitoring.axes).
        "ticks": {
            "stock": nice_ticks(stock_left, integer=True),
            "orders": nice_ticks(orders_per_minute, integer=True),
            "success": nice_ticks([100]),
            "latency": nice_ticks(paid_to_keys_max + paid_to_keys_avg),
        },
        "now": {
            "stock_left": stock_now,
            # The last 60 seconds, not the calendar minute the chart's last bar
            # shows: read a second after a minute turns, that would say 0.
            "orders_last_minute": orders.filter(created_at__gte=now - timedelta(minutes=1)).count(),
            "success_rate": round(100.0 * window_delivered / window_settled, 1) if window_settled else None,
            "paid_to_keys_avg": _round(
                orders.filter(delivered_at__gte=start, paid_at__isnull=False).aggregate(a=Avg(seconds))["a"]
            ),
            # Paid orders the workers still owe (a manual product's wait for the merchant).
            "awaiting_keys": paid_orders_to_fulfil().using("default").filter(product_id=product.id).count(),
            "needs_attention": orders.filter(status=Status.NEEDS_ATTENTION).count(),
            "revenue_today": _money_text(revenue, "today"),
            "revenue_last_7_days": _money_text(revenue, "last_7_days"),
        },
    }


def _round(value) -> float | None:
    return None if value is None else round(float(value), 2)


def admin_revenue_figures(*, now: datetime | None = None) -> dict:
    """The admin home's revenue table: totals per currency, then per product."""
    windows = revenue_windows(now=now)
    return {
        "windows": windows,
        "timezone": settings.TIME_ZONE,
        "summary": revenue_summary(now=now),
        "by_product": revenue_by_product(now=now)[:REVENUE_PRODUCTS_SHOWN],
    }


def _money_text(figures: list[Revenue], field: str) -> str | None:
    # One amount per currency, each with its code: "¥139.60 CNY · $5.00 USD".
    parts = [f"{money(getattr(f, field), f.currency)} {f.currency}" for f in figures]
    return " · ".join(parts) or None
