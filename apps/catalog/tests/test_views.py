import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog.tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

PAGE_FIELDSET = re.compile(r'<form class="purchase".*?<fieldset( disabled)?>', re.S)


def form_disabled(response) -> bool:
    match = PAGE_FIELDSET.search(response.content.decode())
    assert match, "purchase form not on the page"
    return bool(match.group(1))


def badge(response) -> str:
    match = re.search(r'class="badge (badge-[a-z-]+)"', response.content.decode())
    assert match, "no stock badge on the page"
    return match.group(1)


class TestLanguages:
    def test_home_and_product_default_to_chinese(self, client, set_stock):
        product = ProductFactory(title="Steam 钱包充值卡")
        set_stock(product, 50)
        home = client.get("/")
        assert home.status_code == 200
        assert "首页" in home.content.decode() and "有货" in home.content.decode()
        page = client.get(f"/p/{product.sku}")
        assert page.status_code == 200
        assert "立即购买" in page.content.decode()
        assert "Steam 钱包充值卡" in page.content.decode()

    def test_accept_language_english(self, client, set_stock):
        product = ProductFactory()
        set_stock(product, 50)
        home = client.get("/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
        assert "Home" in home.content.decode() and "In stock" in home.content.decode()
        assert "首页" not in home.content.decode()
        page = client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en")
        assert "Buy now" in page.content.decode()
        assert 'lang="en"' in page.content.decode()

    def test_accept_language_chinese(self, client):
        ProductFactory()
        home = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
        assert "首页" in home.content.decode()

    def test_set_language_switches_both_ways(self, client, set_stock):
        product = ProductFactory()
        set_stock(product, 50)
        response = client.post("/i18n/setlang/", {"language": "en", "next": f"/p/{product.sku}"})
        assert response.status_code == 302 and response["Location"] == f"/p/{product.sku}"
        page = client.get(f"/p/{product.sku}")
        assert "Buy now" in page.content.decode() and "立即购买" not in page.content.decode()
        assert "Home" in client.get("/").content.decode()

        client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
        assert "立即购买" in client.get(f"/p/{product.sku}").content.decode()


class TestStockBadges:
    @pytest.mark.parametrize(
        ("remaining", "expected", "english"),
        [(50, "badge-in-stock", "In stock"), (3, "badge-low", "Low stock"), (0, "badge-sold-out", "Sold out")],
    )
    def test_badge_follows_the_redis_counter(self, client, set_stock, remaining, expected, english):
        product = ProductFactory()
        set_stock(product, remaining)
        page = client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en")
        assert badge(page) == expected
        assert english in page.content.decode()
        assert badge(client.get("/")) == expected

    def test_unwarmed_stock_shows_sale_paused(self, client):
        product = ProductFactory()
        page = client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en")
        assert badge(page) == "badge-paused"
        assert "Sale paused" in page.content.decode()
        assert form_disabled(page)

    def test_low_stock_says_how_many_are_left(self, client, set_stock):
        product = ProductFactory()
        set_stock(product, 3)
        assert "Only 3 keys left." in client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en").content.decode()


@pytest.mark.urls("apps.catalog.tests.urls_with_checkout")
class TestPurchaseForm:
    def test_open_sale_in_stock_has_a_live_form(self, client, set_stock):
        product = ProductFactory(max_per_order=3)
        set_stock(product, 50)
        page = client.get(f"/p/{product.sku}")
        html = page.content.decode()
        assert not form_disabled(page)
        assert f'action="/test-orders/checkout/{product.sku}"' in html
        assert 'name="email"' in html and 'max="3"' in html
        assert 'type="hidden" name="csrfmiddlewaretoken"' in html

    def test_each_render_has_a_fresh_idempotency_key(self, client, set_stock):
        product = ProductFactory()
        set_stock(product, 50)
        pattern = re.compile(r'name="idempotency_key" value="([0-9a-f]{32})"')
        first = pattern.search(client.get(f"/p/{product.sku}").content.decode()).group(1)
        second = pattern.search(client.get(f"/p/{product.sku}").content.decode()).group(1)
        assert first != second

    def test_sold_out_disables_the_form(self, client, set_stock):
        product = ProductFactory()
        set_stock(product, 0)
        page = client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en")
        assert form_disabled(page)
        assert "Sold out" in page.content.decode()

    def test_countdown_before_the_sale_starts(self, client, set_stock):
        product = ProductFactory(sale_starts_at=timezone.now() + timedelta(minutes=2))
        set_stock(product, 50)
        page = client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en")
        html = page.content.decode()
        seconds = int(re.search(r'data-countdown="(\d+)"', html).group(1))
        assert 110 <= seconds <= 120
        assert "Starts in" in html and "js/countdown.js" in html
        # The email can be typed early; only the button waits (issue 13).
        assert not form_disabled(page)
        assert re.search(r'<button type="submit" class="button button-buy" disabled[^>]*>\s*Not on sale yet', html)

    def test_ended_sale_disables_the_form(self, client, set_stock):
        product = ProductFactory(
            sale_starts_at=timezone.now() - timedelta(hours=2), sale_ends_at=timezone.now() - timedelta(hours=1)
        )
        set_stock(product, 50)
        page = client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en")
        assert form_disabled(page)
        assert "Sale ended" in page.content.decode() and "data-countdown" not in page.content.decode()
        assert "销售已结束" in client.get(f"/p/{product.sku}").content.decode()


def test_form_is_disabled_while_checkout_is_not_routed(client, set_stock, settings):
    """The page renders before orders:checkout exists, without a live form."""
    settings.ROOT_URLCONF = "cardshop.urls"
    from django.urls import NoReverseMatch, reverse

    product = ProductFactory()
    set_stock(product, 50)
    try:
        reverse("orders:checkout", kwargs={"sku": product.sku})
        routed = True
    except NoReverseMatch:
        routed = False
    assert form_disabled(client.get(f"/p/{product.sku}")) is not routed


class TestPages:
    def test_unknown_and_inactive_products_are_404(self, client):
        inactive = ProductFactory(is_active=False)
        for url in ("/p/NO-SUCH-SKU", f"/p/{inactive.sku}"):
            response = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
            assert response.status_code == 404
            assert "This page does not exist" in response.content.decode()

    def test_home_lists_categories_with_their_active_products(self, client):
        games = CategoryFactory(name="游戏充值", sort_order=1)
        empty = CategoryFactory(name="Nothing here", sort_order=2)
        shown = ProductFactory(category=games, title="原神 60")
        hidden = ProductFactory(category=games, title="Hidden product", is_active=False)
        html = client.get("/").content.decode()
        assert "游戏充值" in html and shown.title in html
        assert hidden.title not in html and empty.name not in html

    def test_products_without_a_category_get_their_own_section(self, client):
        loose = ProductFactory(category=None, title="Loose product")
        html = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        assert "More products" in html and loose.title in html
        assert "更多商品" in client.get("/").content.decode()

    def test_category_page(self, client):
        category = CategoryFactory(name="软件授权")
        product = ProductFactory(category=category)
        other = ProductFactory()
        response = client.get(f"/c/{category.slug}")
        html = response.content.decode()
        assert response.status_code == 200
        assert "软件授权" in html and product.title in html and other.title not in html
        assert client.get("/c/no-such-category").status_code == 404

    def test_messages_are_rendered(self, client, rf):
        from django.contrib.messages import constants
        from django.contrib.messages.storage.cookie import CookieStorage
        from django.http import HttpResponse

        storage = CookieStorage(rf.get("/"))
        storage.add(constants.SUCCESS, "Order placed")
        carrier = HttpResponse()
        storage.update(carrier)
        client.cookies[storage.cookie_name] = carrier.cookies[storage.cookie_name].value
        assert '<li class="message success">Order placed</li>' in client.get("/").content.decode()


def test_pages_render_without_redis(client, settings):
    """Redis down: the pages still render from the database, sale paused."""
    product = ProductFactory()
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"},
    }
    settings.GATE_REDIS_URL = "redis://127.0.0.1:1/0"
    assert client.get("/").status_code == 200
    page = client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    assert badge(page) == "badge-paused" and form_disabled(page)


def test_site_wide_404_page_uses_the_shop_layout(client, settings):
    settings.DEBUG = False
    response = client.get("/no/such/page", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 404
    assert "This page does not exist" in response.content.decode()
    assert "The link may be mistyped" in response.content.decode()
