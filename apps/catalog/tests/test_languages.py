"""Titles, descriptions and category names per language (issue 13): a buyer
sees the merchant's text in their language only, everywhere a product shows,
with the other language's as the fallback when one is empty; the cached
product info serves both languages from one copy."""

import importlib
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.template.loader import render_to_string
from django.utils import translation

from apps.catalog.models import Category, Product
from apps.catalog.selectors import LISTING_CACHE_KEY, catalog_listing_get, product_cache_key, product_info_get
from apps.catalog.services import category_ensure, product_create
from apps.orders.tests.factories import OrderFactory

from .factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}


@pytest.fixture
def bilingual():
    category = CategoryFactory(name_zh_hans="游戏充值", name_en="Game top-up", slug="games")
    return ProductFactory(
        category=category,
        title_zh_hans="原神 创世结晶 60",
        title_en="Genshin 60 Genesis Crystals",
        description_zh_hans="登录游戏后兑换。",
        description_en="Redeem it in the game.",
    )


def test_each_language_sees_its_own_title_only(client, bilingual):
    for url in ("/", "/c/games", f"/p/{bilingual.sku}"):
        zh = client.get(url, **ZH).content.decode()
        en = client.get(url, **EN).content.decode()
        assert "原神 创世结晶 60" in zh and "Genshin 60" not in zh, url
        assert "Genshin 60 Genesis Crystals" in en and "原神" not in en, url
        assert ("游戏充值" in zh and "Game top-up" not in zh) and ("Game top-up" in en and "游戏充值" not in en), url
    zh = client.get(f"/p/{bilingual.sku}", **ZH).content.decode()
    en = client.get(f"/p/{bilingual.sku}", **EN).content.decode()
    assert "登录游戏后兑换" in zh and "Redeem it in the game" not in zh
    assert "Redeem it in the game" in en and "登录游戏后兑换" not in en


def test_an_empty_language_falls_back_to_the_other(client):
    only_zh = ProductFactory(title_zh_hans="只有中文", title_en="")
    # A merchant may also have written only the English one (the admin requires the Chinese; data may not).
    only_en = ProductFactory(title_zh_hans="", title_en="English only")
    assert "只有中文" in client.get(f"/p/{only_zh.sku}", **EN).content.decode()
    assert "English only" in client.get(f"/p/{only_en.sku}", **ZH).content.decode()


def test_one_cached_copy_serves_both_languages(bilingual, django_assert_num_queries):
    cache.delete(product_cache_key(bilingual.sku))
    cache.delete(LISTING_CACHE_KEY)
    with translation.override("zh-hans"):
        assert product_info_get(sku=bilingual.sku).title == "原神 创世结晶 60"
        assert [s.name for s in catalog_listing_get() if s.slug == "games"] == ["游戏充值"]
    with django_assert_num_queries(0), translation.override("en"):
        info = product_info_get(sku=bilingual.sku)
        assert (info.title, info.description, info.category_name) == (
            "Genshin 60 Genesis Crystals",
            "Redeem it in the game.",
            "Game top-up",
        )
        assert [s.name for s in catalog_listing_get() if s.slug == "games"] == ["Game top-up"]


def test_an_english_edit_shows_on_the_next_view(client, bilingual):
    assert "Genshin 60" in client.get(f"/p/{bilingual.sku}", **EN).content.decode()
    bilingual.title_en = "Genshin Impact, 60 crystals"
    bilingual.save()
    assert "Genshin Impact, 60 crystals" in client.get(f"/p/{bilingual.sku}", **EN).content.decode()
    assert "原神 创世结晶 60" in client.get(f"/p/{bilingual.sku}", **ZH).content.decode()


def test_the_api_title_is_the_requests_language(client, bilingual):
    zh = client.get(f"/api/v1/products/{bilingual.sku}", **ZH).json()
    en = client.get(f"/api/v1/products/{bilingual.sku}", **EN).json()
    assert (zh["title"], zh["description"]) == ("原神 创世结晶 60", "登录游戏后兑换。")
    assert (en["title"], en["description"]) == ("Genshin 60 Genesis Crystals", "Redeem it in the game.")
    assert en["image_url"] is None


def test_order_page_and_mail_show_the_buyers_language(client, bilingual):
    order, token = OrderFactory.create_with_token(product=bilingual)
    url = f"/orders/{order.order_no}?token={token}"
    zh = client.get(url, **ZH).content.decode()
    en = client.get(url, **EN).content.decode()
    assert "原神 创世结晶 60" in zh and "Genshin" not in zh
    assert "Genshin 60 Genesis Crystals" in en and "原神" not in en
    # The delivery mail follows whatever language it is rendered in (the order's).
    with translation.override("en"):
        body = render_to_string("orders/email_keys.txt", {"order": order, "keys": ["K"], "site_url": ""})
    assert "Genshin 60 Genesis Crystals" in body and "原神" not in body


def test_product_create_stores_each_language():
    product = product_create(sku="P-1", title=" 中文标题 ", title_en="English title", price="1.00")
    stored = Product.objects.get(pk=product.pk)
    assert (stored.title_zh_hans, stored.title_en) == ("中文标题", "English title")
    with translation.override("en"):
        # Created while an English page is active: the Chinese still lands in the Chinese field.
        other = product_create(sku="P-2", title="只有中文", price="1.00")
    stored = Product.objects.get(pk=other.pk)
    assert (stored.title_zh_hans, stored.title_en) == ("只有中文", "")


def test_create_product_command_takes_an_english_title():
    call_command(
        "create_product",
        *("--sku", "CMD-1", "--title", "中文", "--title-en", "English", "--price", "2.00"),
        *("--description", "说明", "--description-en", "About it"),
        stdout=StringIO(),
    )
    stored = Product.objects.get(sku="CMD-1")
    assert (stored.title_zh_hans, stored.title_en) == ("中文", "English")
    assert (stored.description_zh_hans, stored.description_en) == ("说明", "About it")


def test_category_ensure_names_each_language():
    category = category_ensure(slug="soft", name="软件", name_en="Software")
    again = category_ensure(slug="soft", name="软件授权", name_en="Software licences")
    stored = Category.objects.get(pk=category.pk)
    assert again.pk == category.pk
    assert (stored.name_zh_hans, stored.name_en) == ("软件授权", "Software licences")


def test_seed_demo_has_proper_titles_per_language():
    call_command("seed_demo", stdout=StringIO())
    genshin = Product.objects.get(sku="DEMO-GENSHIN-60")
    assert (genshin.title_zh_hans, genshin.title_en) == ("原神 创世结晶 60", "Genshin Impact 60 Genesis Crystals")
    assert genshin.description_en == "A top-up code: redeem it in the in-game shop."
    assert " · " not in "".join(Product.objects.values_list("title_zh_hans", flat=True))
    assert sorted(Category.objects.values_list("name_en", flat=True)) == [
        "Game top-up",
        "Memberships",
        "Software licences",
    ]


migration = importlib.import_module("apps.catalog.migrations.0004_per_language_content_and_images")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("原神 创世结晶 60 · Genshin Impact 60", ("原神 创世结晶 60", "Genshin Impact 60")),
        ("Steam 钱包充值卡 ¥100 / Steam Wallet ¥100", ("Steam 钱包充值卡 ¥100", "Steam Wallet ¥100")),
        ("只有中文的标题", ("只有中文的标题", "")),
        ("Plain English · with a dot", ("Plain English · with a dot", "")),
        ("中文 · 还是中文", ("中文 · 还是中文", "")),
    ],
)
def test_the_data_migration_splits_bilingual_titles_only(title, expected):
    assert migration.split_bilingual(title) == expected


def test_the_data_migration_moves_existing_rows():
    # The columns as the migration found them: only the old single-language one filled.
    product = ProductFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE catalog_product SET title = %s, title_zh_hans = NULL, title_en = NULL, description = %s, "
            "description_zh_hans = NULL WHERE id = %s",
            ["视频会员月卡 · Video VIP, 1 month", "激活后 31 天有效。\nValid for 31 days.", product.pk],
        )
    # The models as that migration sees them (no per-language descriptors).
    state = MigrationLoader(connection).project_state(("catalog", "0004_per_language_content_and_images"))
    migration.to_languages(state.apps, SimpleNamespace(connection=connection))
    stored = Product.objects.get(pk=product.pk)
    assert (stored.title_zh_hans, stored.title_en) == ("视频会员月卡", "Video VIP, 1 month")
    assert (stored.description_zh_hans, stored.description_en) == ("激活后 31 天有效。", "Valid for 31 days.")
