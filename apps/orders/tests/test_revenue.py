"""Revenue for the admin's dashboards: paid and delivered orders only, per
currency, with "today" and "the last 7 days" counted from midnights in the
shop's timezone (settings.TIME_ZONE), not UTC's."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import translation

from apps.catalog.tests.factories import ProductFactory
from apps.orders.models import Order
from apps.orders.selectors import revenue_by_product, revenue_summary, revenue_windows
from apps.orders.tests.factories import OrderFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 10:00 in Shanghai is 02:00 UTC: UTC's "today" began 8 hours after the shop's.
NOW = datetime(2026, 11, 29, 10, 0, tzinfo=SHANGHAI)
S = Order.Status


def _local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture
def sales(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    card = ProductFactory(sku="CARD", title="Card", price=Decimal("9.90"))
    vip = ProductFactory(sku="VIP", title="VIP", price=Decimal("100.00"))
    usd = ProductFactory(sku="USD-CARD", title="Dollar card", price=Decimal("5.00"), currency="USD")

    def order(product, status, paid_at, quantity=1):
        return OrderFactory(
            product=product,
            status=status,
            paid_at=paid_at,
            quantity=quantity,
            amount=product.price * quantity,
        )

    # Today in Shanghai, though still 11-28 in UTC.
    order(card, S.DELIVERED, _local(29, 0, 30))
    order(card, S.PAID, _local(29, 9, 59), quantity=3)
    order(vip, S.DELIVERED, _local(29, 1))
    order(usd, S.DELIVERED, _local(29, 8))
    # Yesterday in Shanghai: in the week, not today.
    order(card, S.DELIVERED, _local(28, 23, 59))
    # The week's first day (11-23) counts; the day before does not.
    order(vip, S.DELIVERED, _local(23, 0, 10))
    order(vip, S.DELIVERED, _local(22, 23, 50))
    # Money the shop does not keep, or has not taken.
    order(card, S.REFUNDED, _local(29, 2))
    order(card, S.REFUND_PENDING, _local(29, 3))
    order(card, S.NEEDS_ATTENTION, _local(29, 4))
    order(card, S.AWAITING_PAYMENT, None)
    order(card, S.EXPIRED, None)
    return {"card": card, "vip": vip, "usd": usd}


def test_windows_start_at_the_shops_midnights(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    windows = revenue_windows(now=NOW)
    assert windows.today_start == _local(29, 0)
    assert windows.week_start == _local(23, 0)
    assert windows.today_start.utcoffset().total_seconds() == 8 * 3600


def test_the_summary_counts_paid_and_delivered_orders_per_currency(sales):
    by_currency = {r.currency: r for r in revenue_summary(now=NOW)}
    assert set(by_currency) == {"CNY", "USD"}
    cny = by_currency["CNY"]
    assert cny.today == Decimal("9.90") + Decimal("29.70") + Decimal("100.00")
    assert cny.orders_today == 3
    assert cny.last_7_days == cny.today + Decimal("9.90") + Decimal("100.00")
    assert cny.orders_last_7_days == 5
    assert isinstance(cny.today, Decimal) and cny.today.as_tuple().exponent == -2
    usd = by_currency["USD"]
    assert (usd.today, usd.last_7_days, usd.orders_today) == (Decimal("5.00"), Decimal("5.00"), 1)


def test_per_product_figures(sales):
    rows = {(r.sku, r.currency): r for r in revenue_by_product(now=NOW)}
    assert set(rows) == {("CARD", "CNY"), ("VIP", "CNY"), ("USD-CARD", "USD")}
    assert (rows["CARD", "CNY"].today, rows["CARD", "CNY"].last_7_days) == (Decimal("39.60"), Decimal("49.50"))
    assert (rows["VIP", "CNY"].today, rows["VIP", "CNY"].last_7_days) == (Decimal("100.00"), Decimal("200.00"))
    assert rows["CARD", "CNY"].orders_last_7_days == 3 and rows["CARD", "CNY"].title == "Card"
    # The best seller of the week leads its currency.
    assert [r.sku for r in revenue_by_product(now=NOW) if r.currency == "CNY"] == ["VIP", "CARD"]
    one = revenue_summary(now=NOW, product_id=sales["vip"].id)
    assert [(r.currency, r.today, r.last_7_days) for r in one] == [("CNY", Decimal("100.00"), Decimal("200.00"))]


def test_the_day_follows_the_shops_timezone_not_utc(sales, settings):
    """The same orders seen by a shop in UTC: its day began at 08:00 Shanghai
    time, so the orders of 00:30 and 01:00 Shanghai time fall on yesterday."""
    settings.TIME_ZONE = "UTC"
    cny = {r.currency: r for r in revenue_summary(now=NOW)}["CNY"]
    assert cny.today == Decimal("29.70")  # the order of 09:59 Shanghai (01:59 UTC) only
    assert cny.orders_today == 1


def test_no_sales_no_rows(db):
    assert revenue_summary(now=NOW) == [] and revenue_by_product(now=NOW) == []


def test_per_product_titles_are_in_the_viewers_language(sales):
    sales["vip"].title_zh_hans, sales["vip"].title_en = "会员年卡", "VIP year"
    sales["vip"].save()
    with translation.override("en"):
        assert {r.sku: r.title for r in revenue_by_product(now=NOW)}["VIP"] == "VIP year"
    with translation.override("zh-hans"):
        assert {r.sku: r.title for r in revenue_by_product(now=NOW)}["VIP"] == "会员年卡"
