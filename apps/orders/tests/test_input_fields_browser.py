"""A product's checkout field, round trip in headless Chromium: typed on the
product page at checkout, shown decrypted on the merchant's order page."""

import pytest
from playwright.sync_api import expect

from apps.catalog.models import ProductInputField
from apps.orders.models import Order
from apps.orders.services import persistence
from testing.browser import admin_page

from .processes import GunicornServer
from .support import product_with_keys

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1366, "height": 900}


def test_a_typed_field_reaches_the_admin_order_page(browser, static_served, screenshots):
    product = product_with_keys(keys=2, min_page_seconds=0, title="Genshin top-up")
    ProductInputField.objects.create(
        product=product, key="uid", label_zh="游戏 UID", label_en="Game UID", pattern=r"[0-9]{9}"
    )
    ProductInputField.objects.create(
        product=product, key="server", label_zh="服务器", label_en="Server", kind="select", choices="Asia\nEurope"
    )
    server = GunicornServer(workers=1, threads=4, extra_env=dict(static_served)).start()
    try:
        page = browser.new_context(locale="zh-CN", viewport=PHONE).new_page()
        page.goto(f"{server.url}/p/{product.sku}")
        page.fill('input[name="email"]', "gamer@example.com")
        page.get_by_label("游戏 UID").fill("80012345")  # one digit short: the server refuses it
        page.get_by_label("服务器").select_option("Europe")
        # The browser's own check (pattern) would stop the post; the server's is the one that counts.
        page.eval_on_selector("form.purchase", "form => form.noValidate = true")
        page.click("form.purchase button[type=submit]")
        expect(page.locator("body")).to_contain_text("游戏 UID：")
        assert not Order.objects.exists()
        page.fill('input[name="email"]', "gamer@example.com")
        page.get_by_label("游戏 UID").fill("800123456")
        page.get_by_label("服务器").select_option("Europe")
        page.screenshot(path=str(screenshots / "input-fields-checkout-zh-phone.png"), full_page=True)
        page.click("form.purchase button[type=submit]")
        page.wait_for_url(f"{server.url}/orders/**")
        persistence.order_persist_queued()
        order = Order.objects.get(product=product)

        admin = admin_page(
            browser, site_url=server.url, next_path=f"/admin/orders/order/{order.id}/change/", viewport=DESKTOP
        )
        shown = admin.locator(".field-buyer_input")
        expect(shown).to_contain_text("Game UID: 800123456")
        expect(shown).to_contain_text("Server: Europe")
        admin.screenshot(path=str(screenshots / "input-fields-admin-order.png"), full_page=True)
    finally:
        server.stop()
    assert "800123456" not in order.input_values
