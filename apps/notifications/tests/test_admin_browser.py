"""The notification settings and a delivery's attempts in the admin, in
headless Chromium under gunicorn, in Chinese and English, desktop and phone;
and the import report's warning about keys another product holds.
Screenshots go to test-output/."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from apps.cardkeys.crypto import decrypt_secret
from apps.cardkeys.models import KeyImportJob
from apps.catalog.tests.factories import ProductFactory
from apps.notifications.models import Delivery, DeliveryAttempt, NotificationSettings
from apps.orders.tests.processes import GunicornServer
from testing.browser import ADMIN_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def server(static_served):
    get_user_model().objects.create_superuser("boss", "boss@example.com", ADMIN_PASSWORD)
    running = GunicornServer(workers=1, threads=4, extra_env=static_served).start()
    yield running
    running.stop()


def logged_in(browser, server, *, locale: str, viewport: dict, next_path: str):
    page = browser.new_context(locale=locale, viewport=viewport).new_page()
    page.goto(f"{server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", "boss")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    return page


@pytest.mark.parametrize(
    ("locale", "viewport", "name", "heading"),
    [
        ("zh-CN", DESKTOP, "zh-desktop", "Webhook 签名密钥"),
        ("en-US", PHONE, "en-phone", "Webhook signing secret"),
    ],
)
def test_the_merchant_sets_up_the_channels(browser, server, screenshots, locale, viewport, name, heading):
    page = logged_in(
        browser, server, locale=locale, viewport=viewport, next_path="/admin/notifications/notificationsettings/"
    )
    expect(page.locator("form#notificationsettings_form")).to_be_visible()
    expect(page.locator("label[for=id_webhook_secret]")).to_contain_text(heading)
    page.check("#id_webhook_enabled")
    page.fill("#id_webhook_url", "https://hooks.shop.example/cardshop")
    page.fill("#id_webhook_secret", "whsec-from-the-browser")
    page.check("#id_telegram_enabled")
    page.fill("#id_telegram_chat_id", "-100200300")
    # No token: the form says what is missing, and keeps what was typed.
    page.click("input[name=_save]")
    error = page.locator(".field-telegram_bot_token .errorlist")
    expect(error).to_be_visible()
    expect(page.locator("#id_webhook_url")).to_have_value("https://hooks.shop.example/cardshop")
    page.screenshot(path=str(screenshots / f"notifications-settings-error-{name}.png"), full_page=True)
    # The secret field never renders the secret back, so it is typed again.
    page.fill("#id_webhook_secret", "whsec-from-the-browser")
    page.fill("#id_telegram_bot_token", "42:token-from-the-browser")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist .success")).to_be_visible()
    row = NotificationSettings.objects.get()
    assert row.enabled_channels() == ["webhook", "telegram"]
    assert decrypt_secret(row.webhook_secret_encrypted) == "whsec-from-the-browser"
    assert "token-from-the-browser" not in page.content()
    # Nothing sticks out sideways on a phone.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"] + 1, width
    page.screenshot(path=str(screenshots / f"notifications-settings-saved-{name}.png"), full_page=True)


def test_a_delivery_shows_its_attempts_and_the_import_report_its_warning(browser, server, screenshots):
    product = ProductFactory(sku="STEAM-100", title="Steam 100")
    delivery = Delivery.objects.create(
        event=Delivery.Event.ORDER_PAID,
        channel=Delivery.Channel.WEBHOOK,
        event_id="evt_5d0c9e",
        dedupe_key="order.paid:order:1:webhook",
        product=product,
        subject="新的已支付订单 261129-1-ABC",
        text="新的已支付订单 261129-1-ABC\n数量: 1",
        payload={"id": "evt_5d0c9e", "type": "order.paid", "data": {"order_no": "261129-1-ABC"}},
        status=Delivery.Status.SENT,
        attempts=3,
    )
    for number, status, wait in ((1, 500, 5), (2, 503, 10), (3, 200, None)):
        DeliveryAttempt.objects.create(
            delivery=delivery, number=number, succeeded=status == 200, http_status=status, retry_in_seconds=wait
        )
    page = logged_in(
        browser,
        server,
        locale="zh-CN",
        viewport=DESKTOP,
        next_path=f"/admin/notifications/delivery/{delivery.pk}/change/",
    )
    rows = page.locator(".inline-related tr.form-row.has_original")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("500")
    page.screenshot(path=str(screenshots / "notifications-delivery-attempts-zh.png"), full_page=True)

    job = KeyImportJob.objects.create(
        product=ProductFactory(sku="STEAM-200"),
        source_name="keys.txt",
        status=KeyImportJob.Status.DONE,
        stored_count=5,
        lines_read=5,
        report={
            "details": ["5 keys imported, 0 duplicates skipped, 0 invalid lines refused."],
            "duplicate_lines": [],
            "invalid_lines": [],
            "elsewhere": 2,
            "elsewhere_lines": [2, 4],
            "elsewhere_skus": ["STEAM-100"],
            "elsewhere_warning": "警告：2 个导入的卡密已存在于其他商品（STEAM-100）中，行号 2, 4。",
        },
    )
    page.goto(f"{server.url}/admin/cardkeys/keyimportjob/{job.pk}/change/")
    warning = page.locator("#import-report .elsewhere-warning")
    expect(warning).to_contain_text("行号 2, 4")
    page.screenshot(path=str(screenshots / "import-report-elsewhere-warning-zh.png"), full_page=True)
