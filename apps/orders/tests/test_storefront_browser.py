"""The buyer's whole path in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright): product page → buy → sandbox pay → the key appears.
The app runs as production does: gunicorn, a Celery worker with beat (which
persists the reservation), the sandbox's signed notification over HTTP to the
webhook, fulfilment in the worker."""

import pytest
from playwright.sync_api import expect

from apps.cardkeys.models import CardKey
from apps.orders.models import Order

from .processes import CeleryWorker, GunicornServer
from .support import product_with_keys

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def test_a_buyer_walks_from_the_product_page_to_the_key(browser, static_served, screenshots):
    product = product_with_keys(keys=1, min_page_seconds=1, title="Steam 100 CNY")
    server = GunicornServer(workers=1, threads=4, extra_env=dict(static_served))
    server.extra_env["SITE_URL"] = server.url  # where the sandbox sends its notification
    server.start()
    worker = CeleryWorker(beat=True, extra_env={"SITE_URL": server.url}).start()
    try:
        page = browser.new_context(locale="en-US").new_page()
        page.goto(f"{server.url}/p/{product.sku}")
        expect(page.locator("h1")).to_contain_text("Steam 100 CNY")
        page.fill('input[name="email"]', "buyer@example.com")
        page.wait_for_timeout(1200)  # a person reads the page first (minimum time on page: 1 s)
        page.click("form.purchase button[type=submit]")

        page.wait_for_url(f"{server.url}/orders/**")
        page.screenshot(path=str(screenshots / "storefront-pay-methods.png"), full_page=True)
        page.get_by_role("button", name="Test payment (sandbox)").first.click()
        page.get_by_role("button", name="Pay").first.click()

        keys = page.locator("[data-keys] code")
        expect(keys).to_have_count(1, timeout=30000)
        page.screenshot(path=str(screenshots / "storefront-keys.png"))
        shown = keys.first.inner_text()
    finally:
        worker.stop()
        server.stop()

    order = Order.objects.get(product=product)
    assert order.status == Order.Status.DELIVERED and order.buyer_email == "buyer@example.com"
    assert [shown] == [key.secret for key in CardKey.objects.filter(order=order)]
