"""The live sale dashboard in headless Chromium, during a simulated sale."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.orders.models import Order
from apps.orders.services import checkout, fulfilment, payment, persistence
from apps.orders.tests.support import product_with_keys
from testing.browser import admin_page


def _sale_minute(product, *, minutes_ago: int, orders: int, late_seconds: float) -> None:
    """`orders` buyers check out and pay; their keys arrive `late_seconds` after
    payment. Then the orders are moved back in time to that minute."""
    placed = [
        checkout.order_checkout(sku=product.sku, email=f"m{minutes_ago}-{i}@example.com", quantity=1).order_no
        for i in range(orders)
    ]
    persistence.order_persist_queued(product_ids=[product.id])
    for order_no in placed:
        payment.order_mark_paid(
            order_no=order_no, provider="sandbox", event_id=f"sim-{order_no}", amount=Decimal("9.90"), currency="CNY"
        )
        fulfilment.order_fulfil(order_id=Order.objects.get(order_no=order_no).id)
    at = timezone.now() - timedelta(minutes=minutes_ago)
    Order.objects.filter(order_no__in=placed).update(
        created_at=at, paid_at=at + timedelta(seconds=5), delivered_at=at + timedelta(seconds=5 + late_seconds)
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_draws_the_sale_and_follows_it(live_server, browser, screenshots, settings):
    settings.RATELIMIT_ENABLE = False
    product = product_with_keys(keys=120, title="Flash sale card", per_buyer_limit=5)
    for minutes_ago, orders, late in (
        (12, 4, 1.2),
        (10, 9, 1.8),
        (8, 16, 2.5),
        (6, 22, 3.4),
        (4, 14, 2.1),
        (2, 8, 1.4),
    ):
        _sale_minute(product, minutes_ago=minutes_ago, orders=orders, late_seconds=late)
    short = list(
        Order.objects.filter(product=product, created_at__gte=timezone.now() - timedelta(minutes=7)).values_list(
            "id", flat=True
        )[:2]
    )
    Order.objects.filter(id__in=short).update(status=Order.Status.NEEDS_ATTENTION)

    page = admin_page(
        browser,
        site_url=live_server.url,
        next_path=f"/admin/sales/{product.id}/",
        viewport={"width": 1280, "height": 900},
    )
    root = page.locator(".sale-dashboard")
    expect(root).to_have_attribute("data-loaded", "true", timeout=10000)
    expect(page.locator('[data-now="stock_left"]')).to_have_text("47")
    expect(page.locator('[data-now="needs_attention"]')).to_have_text("2")
    for chart in ("stock", "success", "latency"):
        assert page.locator(f'[data-chart="{chart}"] path').count() >= 1, chart
    assert page.locator('[data-chart="orders"] rect').count() == 6

    # The sale goes on while the page is open: it redraws by itself.
    for i in range(3):
        checkout.order_checkout(sku=product.sku, email=f"now-{i}@example.com", quantity=1)
    persistence.order_persist_queued(product_ids=[product.id])
    # Stock comes from Redis at checkout, orders from the database once
    # persisted: a redraw can fall between the two, so both wait for the
    # next redraw (every 5 s) rather than the first one.
    expect(page.locator('[data-now="stock_left"]')).to_have_text("44", timeout=12000)
    expect(page.locator('[data-now="orders_last_minute"]')).to_have_text("3", timeout=12000)
    assert page.locator('[data-chart="orders"] rect').count() == 7
    page.screenshot(path=str(screenshots / "sale-dashboard.png"), full_page=True)
    assert (screenshots / "sale-dashboard.png").stat().st_size > 10_000
