"""The product page's total in headless Chromium: the wholesale tier and the
coupon are shown before paying (en and zh-hans, desktop and phone), and the
order placed from that page costs exactly that total."""

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from apps.catalog.models import ProductPriceTier
from apps.orders.models import Order
from apps.orders.services import persistence
from apps.orders.tests.processes import GunicornServer
from apps.orders.tests.support import product_with_keys

from .factories import CouponFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

DESKTOP, PHONE = {"width": 1366, "height": 900}, {"width": 390, "height": 844}
TEXTS = {
    "en-US": {"have": "Have a coupon?", "applied": "Coupon applied: KEEP10", "tier": "From 10 pieces: ¥4.50 each"},
    "zh-CN": {"have": "有优惠券？", "applied": "已使用优惠券： KEEP10", "tier": "满 10 件：每件 ¥4.50"},
}


def test_tier_and_coupon_total_before_paying_is_what_the_order_costs(browser, static_served, screenshots):
    product = product_with_keys(
        keys=60, title="Steam 100 CNY", max_per_order=20, per_buyer_limit=20, min_page_seconds=0
    )
    ProductPriceTier.objects.create(product=product, min_quantity=10, unit_price=Decimal("4.50"))
    CouponFactory(code="KEEP10", kind="percent", value=Decimal("10"), max_uses=10)
    server = GunicornServer(workers=1, threads=4, extra_env=dict(static_served)).start()
    placed = []
    try:
        for n, (locale, viewport, name) in enumerate(
            [
                ("en-US", DESKTOP, "desktop"),
                ("en-US", PHONE, "phone"),
                ("zh-CN", DESKTOP, "desktop"),
                ("zh-CN", PHONE, "phone"),
            ]
        ):
            texts = TEXTS[locale]
            page = browser.new_context(locale=locale, viewport=viewport).new_page()
            page.goto(f"{server.url}/p/{product.sku}")
            expect(page.locator(".price-tiers li").first).to_have_text(texts["tier"])
            total = page.locator('[data-total="amount"]')
            expect(total).to_have_text("¥9.90")
            page.fill('input[name="email"]', f"buyer{n}@example.com")
            page.fill('input[name="quantity"]', "10")
            expect(total).to_have_text("¥45.00")  # the tier: 10 × 4.50
            page.get_by_text(texts["have"]).click()
            page.fill('input[name="coupon"]', "keep10")
            page.click("[data-coupon-apply]")
            expect(page.locator("[data-coupon-message]")).to_have_text(texts["applied"])
            expect(total).to_have_text("¥40.50")  # 10 % off
            expect(page.locator('[data-total="discount"]')).to_have_text("¥4.50")
            # The coupon field and its button share a line, inside the screen.
            field, button = (
                page.locator('input[name="coupon"]').bounding_box(),
                page.locator("[data-coupon-apply]").bounding_box(),
            )
            assert abs(field["y"] - button["y"]) < 8 and button["x"] + button["width"] <= viewport["width"]
            assert total.bounding_box()["x"] + total.bounding_box()["width"] <= viewport["width"]
            page.screenshot(path=str(screenshots / f"pricing-total-{locale}-{name}.png"), full_page=True)

            page.click("form.purchase button[type=submit]")
            page.wait_for_url(f"{server.url}/orders/**")
            placed.append(page.url.split("/orders/")[1].split("?")[0])
            page.context.close()
    finally:
        server.stop()

    persistence.order_persist_queued()
    orders = Order.objects.filter(order_no__in=placed)
    assert orders.count() == 4
    for order in orders:
        assert (order.unit_price, order.coupon_code, order.discount, order.amount) == (
            Decimal("4.50"),
            "KEEP10",
            Decimal("4.50"),
            Decimal("40.50"),
        )
    assert set(orders.values_list("language", flat=True)) == {"en", "zh-hans"}
