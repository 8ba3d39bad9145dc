"""The buyer's whole path with 易支付 in headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright): product page → buy → choose Alipay
through epay → the (fake) epay cashier page → pay → epay notifies the shop by
GET and sends the buyer back → the key on the order page. gunicorn, a Celery
worker with beat, MariaDB and Redis are the real ones."""

import pytest
from playwright.sync_api import expect

from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.tests.processes import CeleryWorker, GunicornServer
from apps.orders.tests.support import product_with_keys
from apps.payments.models import PaymentEvent

from .fake_epay import FakeEpay

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def test_a_buyer_pays_with_epay_and_gets_the_key(browser, static_served, screenshots):
    product = product_with_keys(keys=1, min_page_seconds=1, title="Game card 60")
    with FakeEpay() as gateway:
        env = {
            "PAYMENT_PROVIDERS": "epay",
            "EPAY_GATEWAY_URL": gateway.url,
            "EPAY_PID": gateway.pid,
            "EPAY_KEY": gateway.key,
            **static_served,
        }
        server = GunicornServer(workers=1, threads=4, extra_env=env)
        server.extra_env["SITE_URL"] = server.url  # where epay sends the buyer back and its notification
        server.start()
        worker = CeleryWorker(beat=True, extra_env={**env, "SITE_URL": server.url}).start()
        try:
            page = browser.new_context(locale="en-US").new_page()
            page.goto(f"{server.url}/p/{product.sku}")
            page.fill('input[name="email"]', "buyer@example.com")
            page.wait_for_timeout(1200)  # the minimum time on the page
            page.click("form.purchase button[type=submit]")

            page.wait_for_url(f"{server.url}/orders/**")
            expect(page.get_by_role("button", name="Alipay")).to_be_visible()
            expect(page.get_by_role("button", name="Test payment (sandbox)")).to_have_count(0)
            page.screenshot(path=str(screenshots / "epay-order-methods.png"), full_page=True)
            page.get_by_role("button", name="Alipay").click()

            page.wait_for_url(f"{gateway.url}/submit.php**")  # epay's cashier page
            page.get_by_role("link", name="pay").click()

            page.wait_for_url(f"{server.url}/orders/**")  # epay sends the buyer back
            keys = page.locator("[data-keys] code")
            expect(keys).to_have_count(1, timeout=30000)
            page.screenshot(path=str(screenshots / "epay-keys.png"), full_page=True)
            shown = keys.first.inner_text()
        finally:
            worker.stop()
            server.stop()

    order = Order.objects.get(product=product)
    assert order.status == Order.Status.DELIVERED
    assert [shown] == [key.secret for key in CardKey.objects.filter(order=order)]
    event = PaymentEvent.objects.get(order=order)
    assert event.provider == "epay" and gateway.trades[event.event_id].type == "alipay"
    assert gateway.notify_answers[-1] == (200, "success")  # after "fail: order_pending" while it was placed
