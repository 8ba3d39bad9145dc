"""The sale dashboard's axes in headless Chromium (Chinese on a desktop,
English on a phone), from a browser whose own clock is New York's: value ticks at round numbers, time labels on
round minutes of the shop's clock (Asia/Shanghai), revenue with its currency."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.orders.models import Order
from apps.orders.selectors import revenue_windows
from apps.orders.tests.factories import OrderFactory
from apps.orders.tests.support import product_with_keys
from testing.browser import admin_page

CHARTS = ("stock", "orders", "success", "latency")


def _shop_labels(now) -> list[str]:
    """The dashboard's time labels at `now`: the round five minutes of the
    last 30, on the shop's clock."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=29)
    shop_tz = timezone.get_default_timezone()
    moments = (timezone.localtime(start + timedelta(minutes=m), shop_tz) for m in range(30))
    return [f"{m:%H:%M}" for m in moments if m.minute % 5 == 0]


def _shop_minutes(first, last) -> set[str]:
    shop_tz = timezone.get_default_timezone()
    minutes = int((last - first).total_seconds() // 60) + 2
    return {f"{timezone.localtime(first + timedelta(minutes=m), shop_tz):%H:%M}" for m in range(minutes)}


def _is_round_axis(labels: list[str]) -> bool:
    values = [Decimal(label) for label in labels]
    steps = {b - a for a, b in zip(values, values[1:], strict=False)}
    if len(steps) != 1:
        return False
    step = steps.pop()
    return step > 0 and step.normalize().as_tuple().digits in ((1,), (2,), (5,)) and values[0] % step == 0


def _sale(product) -> None:
    """Orders over the last minutes: 13 in one minute (the orders axis must
    not read 0, 3.25, 6.5 …), keys 3.7 s after payment at the slowest."""
    now = timezone.now()
    for minutes_ago, count, late in ((9, 4, 1.3), (6, 13, 3.7), (3, 7, 2.2)):
        at = now - timedelta(minutes=minutes_ago)
        for i in range(count):
            order = OrderFactory(
                product=product, status=Order.Status.DELIVERED, buyer_email=f"b{minutes_ago}-{i}@example.com"
            )
            Order.objects.filter(id=order.id).update(
                created_at=at, paid_at=at + timedelta(seconds=5), delivered_at=at + timedelta(seconds=5 + late)
            )


LAYOUTS = {
    # name: browser locale, viewport, the first chart's caption, the revenue table's caption
    "zh-hans-desktop": ("zh-CN", {"width": 1366, "height": 900}, "剩余库存", "营业额"),
    "en-phone": ("en-US", {"width": 390, "height": 844}, "Stock left", "Revenue"),
}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_dashboard_has_round_ticks_and_the_shops_clock(live_server, browser, screenshots, settings, layout):
    locale, viewport, stock_caption, revenue_caption = LAYOUTS[layout]
    settings.TIME_ZONE = "Asia/Shanghai"
    product = product_with_keys(keys=73, title="秒杀卡 Flash card")
    _sale(product)
    before = timezone.now()
    page = admin_page(
        browser,
        site_url=live_server.url,
        next_path=f"/admin/sales/{product.id}/",
        viewport=viewport,
        locale=locale,
        timezone_id="America/New_York",
    )
    expect(page.locator(".sale-dashboard")).to_have_attribute("data-loaded", "true", timeout=10000)
    after = timezone.now()
    assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == "America/New_York"
    expect(page.locator("figcaption").first).to_have_text(stock_caption)
    # Every chart fits the window, a phone's too.
    for chart in CHARTS:
        box = page.locator(f'[data-chart="{chart}"]').bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], (chart, box)

    for chart in CHARTS:
        ticks = page.locator(f'[data-chart="{chart}"] .y-tick').all_text_contents()
        assert len(ticks) >= 3 and _is_round_axis(ticks), (chart, ticks)
    assert page.locator('[data-chart="orders"] .y-tick').all_text_contents() == ["0", "5", "10", "15"]
    assert page.locator('[data-chart="latency"] .y-tick').all_text_contents() == ["0", "1", "2", "3", "4"]
    assert page.locator('[data-chart="success"] .y-tick').all_text_contents() == ["0", "20", "40", "60", "80", "100"]

    # Every chart's time axis: HH:MM on round five minutes of Shanghai's clock
    # (13 hours from the browser's), the same on all four charts.
    shown = page.locator('[data-chart="orders"] .x-tick').all_text_contents()
    assert shown in (_shop_labels(before), _shop_labels(after)), shown
    assert all(page.locator(f'[data-chart="{c}"] .x-tick').all_text_contents() == shown for c in CHARTS)
    updated = page.locator("[data-updated]").inner_text()
    read = timezone.now()
    assert re.fullmatch(r"\d\d:\d\d:\d\d \(Asia/Shanghai\)", updated), updated
    assert updated[:5] in _shop_minutes(before, read), updated

    # ¥9.90 for each order paid since the shop's midnight (all 24 unless the
    # test runs just after it).
    paid_today = Order.objects.filter(product=product, paid_at__gte=revenue_windows().today_start).count()
    expect(page.locator('[data-now="revenue_today"]')).to_have_text(f"¥{Decimal('9.90') * paid_today} CNY")

    path = screenshots / f"sale-dashboard-axes-{layout}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000

    # The admin home: the revenue table beside the apps, in Chinese.
    page.goto(f"{live_server.url}/admin/")
    revenue = page.locator("#revenue")
    expect(revenue.locator("caption")).to_have_text(revenue_caption)
    expect(revenue.locator('[data-revenue="today-CNY"]')).to_have_text(f"¥{Decimal('9.90') * paid_today} CNY")
    expect(revenue.locator(".revenue-product th a")).to_have_text("秒杀卡 Flash card")
    home = screenshots / f"admin-home-revenue-{layout}.png"
    page.screenshot(path=str(home), full_page=True)
    assert home.stat().st_size > 10_000
