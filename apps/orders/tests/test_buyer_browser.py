"""The buyer's side of issue 13 in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright), desktop 1366x900 and phone 390x844, English and
Chinese: the mail's link in a browser that never saw the order, "my orders in
this browser", a flash sale opening under a form already filled in, the key
block on a phone, and the gap under the header. Geometry is asserted on the
elements themselves; screenshots go to test-output/."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

from apps.cardkeys.tests.factories import CardKeyFactory
from apps.catalog.tests.factories import ProductFactory
from apps.orders import mail as order_mail
from apps.orders.models import Order
from apps.orders.services import persistence
from apps.orders.tests.factories import OrderFactory

from .support import product_with_keys

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
# Keys as merchants upload them: groups joined by dashes, one longer than a phone is wide.
KEYS = ["ABCDE-FGHIJ-KLMNO-PQRST-UVWXY", "X7K2P-9QW3E-M4N8B-ZC5VD", "LONGKEY-0123456789-ABCDEFGHIJ-0123456789-TAIL"]


def _context(browser, *, viewport: dict, locale: str):
    return browser.new_context(viewport=viewport, locale=locale)


def _delivered_order(keys=KEYS) -> tuple[Order, str]:
    order, token = OrderFactory.create_with_token(
        status=Order.Status.DELIVERED, product=ProductFactory(title="Steam 100 CNY")
    )
    for secret in keys:
        CardKeyFactory(sold=True, order=order, product=order.product, secret=secret)
    return order, token


def _mail_link(order: Order) -> str:
    order_mail.order_keys_email_send(order_id=order.id)
    (link,) = re.findall(r"https?://\S+", mail.outbox[-1].body)
    return link


def _buy(page, base: str, product, *, email: str) -> str:
    """Buy one key of `product` through its page's form; returns the order number."""
    page.goto(f"{base}/p/{product.sku}")
    page.fill('input[name="email"]', email)
    page.click("form.purchase button[type=submit]")
    page.wait_for_url(re.compile(r"/orders/[0-9A-Z-]+$"))
    return page.url.rsplit("/", 1)[1]


# --- the mail link


@pytest.mark.parametrize(
    ("locale", "viewport", "title"), [("en-US", DESKTOP, "Your keys are ready."), ("zh-CN", PHONE, None)]
)
def test_the_mail_link_opens_the_order_and_its_keys_in_a_fresh_browser(
    live_server, browser, screenshots, settings, locale, viewport, title
):
    settings.SITE_URL = live_server.url
    order, _ = _delivered_order()
    link = _mail_link(order)

    page = _context(browser, viewport=viewport, locale=locale).new_page()  # no cookies: never saw the order
    page.goto(link)
    # The signature leaves the address bar: the clean order page.
    assert page.url == f"{live_server.url}/orders/{order.order_no}"
    expect(page.locator("[data-keys] code")).to_have_text(KEYS)
    if title:
        expect(page.locator('[data-state="delivered"] .state-title')).to_have_text(title)
    page.screenshot(path=str(screenshots / f"buyer-mail-link-{locale}.png"), full_page=True)

    # The same address in yet another browser, without the link: asked for the email.
    other = _context(browser, viewport=viewport, locale=locale).new_page()
    other.goto(f"{live_server.url}/orders/{order.order_no}")
    expect(other.locator('input[name="order_no"]')).to_have_value(order.order_no)
    expect(other.locator('input[name="email"]')).to_be_visible()
    expect(other.locator("[data-keys]")).to_have_count(0)


# --- my orders in this browser


@pytest.mark.parametrize(("locale", "viewport"), [("zh-CN", PHONE), ("en-US", DESKTOP)])
def test_my_orders_lists_this_browsers_two_orders_and_none_in_a_fresh_one(
    live_server, browser, screenshots, locale, viewport
):
    # A shop with many products: order numbers carry five-digit product ids.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE catalog_product AUTO_INCREMENT = 10000")
    first = product_with_keys(keys=2, title="Steam 50")
    second = product_with_keys(keys=2, title="Xbox 200")
    context = _context(browser, viewport=viewport, locale=locale)
    context.set_default_timeout(15000)
    page = context.new_page()
    page.set_default_navigation_timeout(15000)
    base = live_server.url
    first_no = _buy(page, base, first, email="mine@example.com")
    second_no = _buy(page, base, second, email="mine@example.com")
    persistence.order_persist_queued()  # as the worker would, within milliseconds

    page.locator("header a[href='/orders/mine']").click()  # from the header, on any page
    page.wait_for_url(f"{base}/orders/mine")
    rows = page.locator("tr.my-order")
    expect(rows).to_have_count(2)
    # Newest first, each with its product, quantity, amount, status and a dated link.
    assert rows.nth(0).get_attribute("data-order-no") == second_no
    assert rows.nth(1).get_attribute("data-order-no") == first_no
    expect(rows.nth(0)).to_contain_text("Xbox 200")
    expect(rows.nth(1)).to_contain_text("Steam 50")
    expect(rows.nth(0)).to_contain_text("UTC+8")
    page.screenshot(path=str(screenshots / f"buyer-my-orders-{locale}.png"), full_page=True)
    # Everything of each row on the screen: nothing clipped or scrolled off to the side.
    assert page.evaluate(_ROWS_INSIDE, viewport["width"]), "a row of my orders runs off the screen"
    rows.nth(1).locator("a").click()
    page.wait_for_url(f"{base}/orders/{first_no}")

    fresh = _context(browser, viewport=viewport, locale=locale).new_page()
    fresh.goto(f"{base}/orders/mine")
    expect(fresh.locator("tr.my-order")).to_have_count(0)
    expect(fresh.locator(".empty")).to_be_visible()


_ROWS_INSIDE = """
(width) => [...document.querySelectorAll('tr.my-order td')].every((td) => {
  const box = td.getBoundingClientRect();
  return box.left >= 0 && box.right <= width && td.scrollWidth <= td.clientWidth + 1;
})
"""


# --- the flash sale opens without losing the form


def test_a_flash_sale_opens_in_place_and_the_early_email_buys(live_server, browser, screenshots):
    product = product_with_keys(
        keys=3, title="Flash 5s", min_page_seconds=3, sale_starts_at=timezone.now() + timedelta(seconds=5)
    )
    page = _context(browser, viewport=DESKTOP, locale="en-US").new_page()
    page.goto(f"{live_server.url}/p/{product.sku}")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    buy = page.locator("form.purchase button[type=submit]")
    expect(buy).to_be_disabled()
    expect(page.locator('input[name="email"]')).to_be_enabled()
    page.fill('input[name="email"]', "early@example.com")
    page.fill('input[name="quantity"]', "2")
    page.screenshot(path=str(screenshots / "buyer-flash-before-open.png"))

    expect(buy).to_be_enabled(timeout=15000)
    expect(buy).to_have_text("Buy now")
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded at the opening"
    expect(page.locator('input[name="email"]')).to_have_value("early@example.com")
    expect(page.locator('input[name="quantity"]')).to_have_value("2")
    page.screenshot(path=str(screenshots / "buyer-flash-open.png"))
    buy.click()  # no retyping, at once: the buyer has been on the page for over 5 s

    page.wait_for_url(re.compile(r"/orders/[0-9A-Z-]+$"))
    assert "quicker than a person" not in page.content()
    order_no = page.url.rsplit("/", 1)[1]
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=order_no)
    assert (order.buyer_email, order.quantity, order.product_id) == ("early@example.com", 2, product.id)


def test_a_sale_opening_after_the_page_token_would_be_stale_renews_it_in_time(live_server, browser, settings):
    """The page's token would be too old by the opening: the page fetches a
    fresh one from the API early enough that it is past the product's minimum
    time on page when the sale opens, so the buyer's first click buys."""
    settings.PAGE_TOKEN_MAX_AGE = 12  # the page's own token is stale by the opening, 14 s after it
    product = product_with_keys(
        keys=3, title="Flash 14s", min_page_seconds=2, sale_starts_at=timezone.now() + timedelta(seconds=14)
    )
    page = _context(browser, viewport=PHONE, locale="en-US").new_page()
    page.goto(f"{live_server.url}/p/{product.sku}")
    first_token = page.locator('input[name="page_token"]').input_value()
    page.fill('input[name="email"]', "patient@example.com")
    buy = page.locator("form.purchase button[type=submit]")
    expect(buy).to_be_enabled(timeout=20000)
    assert page.locator('input[name="page_token"]').input_value() != first_token
    expect(page.locator('input[name="email"]')).to_have_value("patient@example.com")
    buy.click()
    page.wait_for_url(re.compile(r"/orders/[0-9A-Z-]+$"))
    persistence.order_persist_queued()
    assert Order.objects.filter(product=product, buyer_email="patient@example.com").count() == 1


def test_after_a_refusal_the_form_still_holds_what_was_typed(live_server, browser):
    product = product_with_keys(keys=3, title="Slow buyer", min_page_seconds=30)
    page = _context(browser, viewport=PHONE, locale="zh-CN").new_page()
    page.goto(f"{live_server.url}/p/{product.sku}")
    page.fill('input[name="email"]', "quick@example.com")
    page.fill('input[name="quantity"]', "3")
    page.click("form.purchase button[type=submit]")  # under the 30 s minimum: refused
    page.wait_for_url(f"{live_server.url}/p/{product.sku}")
    expect(page.locator(".message.error")).to_be_visible()
    expect(page.locator('input[name="email"]')).to_have_value("quick@example.com")
    expect(page.locator('input[name="quantity"]')).to_have_value("3")


@pytest.mark.parametrize("opens_in", [None, 600])
@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_on_a_phone_the_buy_button_is_visible_without_scrolling(live_server, browser, screenshots, locale, opens_in):
    """On sale, and before the sale (its countdown above the form)."""
    starts = timezone.now() + timedelta(seconds=opens_in) if opens_in else timezone.now() - timedelta(hours=1)
    product = product_with_keys(
        keys=3, title="Steam 钱包充值卡 100 元", description="Line one.\nLine two.", sale_starts_at=starts
    )
    page = _context(browser, viewport=PHONE, locale=locale).new_page()
    page.goto(f"{live_server.url}/p/{product.sku}")
    box = page.locator("form.purchase button[type=submit]").bounding_box()
    page.screenshot(path=str(screenshots / f"buyer-product-phone-{locale}{'-countdown' if opens_in else ''}.png"))
    assert box is not None
    assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], box
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box


# --- the key block on a phone


_KEY_GEOMETRY = """
() => [...document.querySelectorAll('[data-keys] li')].map((li) => {
  const code = li.querySelector('code');
  const button = li.querySelector('button');
  const lineHeight = (el) => {
    const style = getComputedStyle(el);
    return style.lineHeight === 'normal' ? parseFloat(style.fontSize) * 1.2 : parseFloat(style.lineHeight);
  };
  const contentHeight = (el) => {
    const style = getComputedStyle(el);
    return el.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
  };
  const range = document.createRange();
  range.selectNodeContents(code);
  const tops = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
  const buttonRange = document.createRange();
  buttonRange.selectNodeContents(button);
  const buttonTops = new Set([...buttonRange.getClientRects()].map((rect) => Math.round(rect.top)));
  const codeBox = code.getBoundingClientRect();
  const buttonBox = button.getBoundingClientRect();
  return {
    key: code.textContent,
    textLines: tops.size,
    codeHeight: contentHeight(code), codeLine: lineHeight(code),
    buttonLines: buttonTops.size,
    buttonHeight: contentHeight(button), buttonLine: lineHeight(button),
    buttonVisible: button.offsetParent !== null,
    buttonInside: buttonBox.left >= 0 && buttonBox.right <= window.innerWidth,
    codeInside: codeBox.left >= 0 && codeBox.right <= window.innerWidth,
    buttonBesideOrBelow: buttonBox.left >= codeBox.right - 1 || buttonBox.top >= codeBox.bottom - 1,
  };
})
"""


@pytest.mark.parametrize(("locale", "viewport"), [("zh-CN", PHONE), ("en-US", PHONE), ("zh-CN", DESKTOP)])
def test_keys_never_split_and_copy_buttons_stay_one_line(live_server, browser, screenshots, locale, viewport):
    order, token = _delivered_order()
    context = _context(browser, viewport=viewport, locale=locale)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.goto(f"{live_server.url}/orders/{order.order_no}?token={token}")
    expect(page.locator("[data-keys] button").first).to_be_visible()
    page.screenshot(path=str(screenshots / f"buyer-keys-{locale}-{viewport['width']}.png"), full_page=True)
    rows = page.evaluate(_KEY_GEOMETRY)
    assert [row["key"] for row in rows] == KEYS
    for row in rows:
        assert row["textLines"] == 1, row  # the key on one line, never split
        assert row["codeHeight"] < 1.5 * row["codeLine"], row
        assert row["buttonVisible"] and row["buttonLines"] == 1, row  # "复制" side by side, not stacked
        assert row["buttonHeight"] < 1.5 * row["buttonLine"], row
        assert row["codeInside"] and row["buttonInside"] and row["buttonBesideOrBelow"], row
    # The longest key scrolls inside its block rather than breaking: all of it is still there to copy.
    page.locator("[data-keys] button").last.click()
    assert page.evaluate("navigator.clipboard.readText()") == KEYS[-1]


# --- the header's gap


_GAP = """
() => {
  const header = document.querySelector('header.site-header').getBoundingClientRect();
  const first = [...document.querySelector('main').children].find((el) => el.getBoundingClientRect().height > 0);
  return first.getBoundingClientRect().top - header.bottom;
}
"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE])
def test_page_content_keeps_a_gap_below_the_header(live_server, browser, viewport):
    product = product_with_keys(keys=1)
    order, token = OrderFactory.create_with_token(product=product)
    page = _context(browser, viewport=viewport, locale="en-US").new_page()
    for path in ["/", f"/p/{product.sku}", "/orders/lookup", "/orders/mine", f"/orders/{order.order_no}?token={token}"]:
        page.goto(f"{live_server.url}{path}")
        gap = page.evaluate(_GAP)
        assert gap >= 8, f"{path}: content {gap}px below the header"


# --- the lookup page


@pytest.mark.parametrize(
    ("locale", "viewport", "required"),
    [("en-US", DESKTOP, "This field is required."), ("zh-CN", PHONE, "该字段是必填项。")],
)
def test_the_lookup_page_shows_its_errors_as_errors(live_server, browser, screenshots, locale, viewport, required):
    page = _context(browser, viewport=viewport, locale=locale).new_page()
    page.goto(f"{live_server.url}/orders/lookup")
    email = page.locator('input[name="email"]')
    # A real input, as wide as the form, not a tiny inline box.
    form_width = page.locator("form.form-stack").bounding_box()["width"]
    assert email.bounding_box()["width"] >= form_width - 2
    page.fill('input[name="email"]', "not-an-email")
    page.click("form.form-stack button[type=submit]")
    error = page.locator(".field-error").first
    expect(error).to_have_text(required)
    red = "rgb(185, 28, 28)"  # --bad
    assert error.evaluate("el => getComputedStyle(el).color") == red
    assert page.locator('input[name="order_no"]').evaluate("el => getComputedStyle(el).borderTopColor") == red
    page.screenshot(path=str(screenshots / f"buyer-lookup-errors-{locale}.png"), full_page=True)

    page.fill('input[name="order_no"]', "261122-1-NOSUCHORDER0")
    page.fill('input[name="email"]', "someone@example.com")
    page.click("form.form-stack button[type=submit]")
    expect(page.locator(".form-errors")).to_be_visible()
    assert page.locator(".form-errors").evaluate("el => getComputedStyle(el).color") == red
