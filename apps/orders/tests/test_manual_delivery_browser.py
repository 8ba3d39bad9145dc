"""Manual delivery end to end in headless Chromium: a buyer on a phone (zh-hans)
buys a manual-delivery product and pays with the sandbox provider; the order
waits for the merchant; the merchant delivers it in the admin (desktop,
English); the buyer's open page shows what was delivered, and so does the
page on a desktop in English. gunicorn, a Celery worker with beat, the
sandbox's signed notification over HTTP, as in production."""

import pytest
from django.conf import settings
from playwright.sync_api import expect

from apps.orders.models import Order
from testing.browser import admin_page

from .delivery_support import SHARED_KEY, product_manual, product_reusable, stock_number
from .processes import CeleryWorker, GunicornServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
DELIVERED = "已为账号 12345 充值 100 点\nTopped up 100 credits to account 12345 — ref A-77"


def test_a_manual_order_waits_for_the_merchant_then_the_buyer_sees_what_was_delivered(
    browser, static_served, screenshots
):
    product = product_manual(stock=5, title="Game top-up 100")
    server = GunicornServer(workers=1, threads=4, extra_env=dict(static_served))
    server.extra_env["SITE_URL"] = server.url
    server.start()
    worker = CeleryWorker(beat=True, extra_env={"SITE_URL": server.url}).start()
    try:
        buyer = browser.new_context(locale="zh-CN", viewport=PHONE).new_page()
        buyer.goto(f"{server.url}/p/{product.sku}")
        expect(buyer.locator('[data-delivery="manual"]')).to_contain_text("商家人工发货")  # said before paying
        buyer.fill('input[name="email"]', "buyer@example.com")
        buyer.click("form.purchase button[type=submit]")
        buyer.wait_for_url(f"{server.url}/orders/**")
        buyer.locator('.state:not([hidden]) button[name="method"][value="sandbox"]').click()
        buyer.locator('button[name="pay"]').click()

        waiting = buyer.locator('[data-state="paid"]')
        expect(waiting).to_be_visible(timeout=30000)
        expect(waiting).to_contain_text("商家正在为您处理订单")
        buyer.screenshot(path=str(screenshots / "manual-delivery-buyer-waiting-phone-zh.png"), full_page=True)
        order = Order.objects.get(product=product)
        assert order.status == Order.Status.PAID  # the worker's fulfilment left it to the merchant

        merchant = admin_page(browser, site_url=server.url, next_path="/admin/", viewport=DESKTOP)
        expect(merchant.locator("#manual-delivery-queue [data-awaiting]")).to_have_text("1")
        merchant.click("#manual-delivery-queue a")
        merchant.click(f"text={order.order_no}")
        merchant.fill('textarea[name="manual_delivery_content"]', DELIVERED)
        merchant.screenshot(path=str(screenshots / "manual-delivery-admin-form-desktop-en.png"), full_page=True)
        merchant.click('input[name="_save"]')
        expect(merchant.locator(".messagelist")).to_contain_text("delivered")
        merchant.screenshot(path=str(screenshots / "manual-delivery-admin-done-desktop-en.png"), full_page=True)
        merchant.goto(f"{server.url}/admin/catalog/product/{product.id}/change/")
        expect(merchant.locator("#id_delivery_kind")).to_have_value("manual")
        expect(merchant.locator("#id_stock_quantity")).to_have_value("4")  # one taken by the delivery
        assert merchant.locator("a", has_text="Upload keys").count() == 0
        merchant.locator("#id_delivery_kind").scroll_into_view_if_needed()
        merchant.screenshot(path=str(screenshots / "manual-delivery-admin-product-desktop-en.png"))

        # The buyer's page, still open, turns delivered and shows the text as typed.
        text = buyer.locator("[data-delivered-text]")
        expect(text).to_be_visible(timeout=30000)
        assert text.inner_text() == DELIVERED
        expect(buyer.locator('[data-state="delivered"]')).to_contain_text("您的订单已发货")
        box = text.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]  # wraps, no sideways scroll
        assert buyer.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        buyer.screenshot(path=str(screenshots / "manual-delivery-buyer-delivered-phone-zh.png"), full_page=True)

        # The same order page on a desktop, in English, rendered by the server.
        buyer.context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": "en", "url": server.url}])
        buyer.set_viewport_size(DESKTOP)
        buyer.reload()
        expect(buyer.locator('[data-state="delivered"]')).to_contain_text("Your order has been delivered.")
        expect(buyer.locator('[data-state="delivered"]')).to_contain_text("What the merchant delivered:")
        assert buyer.locator("[data-delivered-text]").inner_text() == DELIVERED
        assert buyer.locator("[data-keys] li").count() == 0
        buyer.screenshot(path=str(screenshots / "manual-delivery-buyer-delivered-desktop-en.png"), full_page=True)
    finally:
        worker.stop()
        server.stop()

    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED and order.manually_delivered_by.username == "boss"
    assert stock_number(product) == 4


def test_a_reusable_key_shows_like_a_normal_key_on_a_phone(browser, static_served, screenshots):
    product = product_reusable(stock=3, title="Font pack download")
    server = GunicornServer(workers=1, threads=4, extra_env=dict(static_served))
    server.extra_env["SITE_URL"] = server.url
    server.start()
    worker = CeleryWorker(beat=True, extra_env={"SITE_URL": server.url}).start()
    try:
        buyer = browser.new_context(locale="en-US", viewport=PHONE).new_page()
        buyer.goto(f"{server.url}/p/{product.sku}")
        expect(buyer.locator('[data-delivery="reusable_key"]')).to_contain_text("Every buyer gets the same key")
        buyer.fill('input[name="email"]', "buyer@example.com")
        buyer.click("form.purchase button[type=submit]")
        buyer.wait_for_url(f"{server.url}/orders/**")
        buyer.locator('.state:not([hidden]) button[name="method"][value="sandbox"]').click()
        buyer.locator('button[name="pay"]').click()

        keys = buyer.locator("[data-keys] code")
        expect(keys).to_have_count(1, timeout=30000)
        assert keys.first.inner_text() == SHARED_KEY
        expect(buyer.locator('[data-state="delivered"]')).to_contain_text("Your keys are ready.")
        assert buyer.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        buyer.screenshot(path=str(screenshots / "reusable-key-buyer-phone-en.png"), full_page=True)
    finally:
        worker.stop()
        server.stop()
    assert stock_number(product) == 2
