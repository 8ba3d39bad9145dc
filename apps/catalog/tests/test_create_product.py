import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from apps.catalog.models import Product
from apps.catalog.services import product_create
from apps.catalog.tests.factories import CategoryFactory, ProductFactory
from apps.core.errors import InvalidInput
from cardshop.env import BASE_DIR

pytestmark = pytest.mark.django_db


def test_create_product_with_every_option(capsys):
    category = CategoryFactory(slug="games")
    call_command(
        "create_product",
        "--lang",
        "en",
        "--sku",
        "GENSHIN-60",
        "--title",
        "原神 60 创世结晶",
        "--price",
        "6.00",
        "--currency",
        "USD",
        "--per-buyer-limit",
        "2",
        "--max-per-order",
        "1",
        "--starts-at",
        "2030-01-01T20:00:00",
        "--ends-at",
        "2030-01-02T20:00:00+00:00",
        "--min-page-seconds",
        "5",
        "--category",
        "games",
        "--description",
        "Redeem in game.",
    )
    product = Product.objects.get(sku="GENSHIN-60")
    assert product.title == "原神 60 创世结晶"
    assert product.price == Decimal("6.00") and product.currency == "USD"
    assert (product.per_buyer_limit, product.max_per_order, product.min_page_seconds) == (2, 1, 5)
    assert product.category == category and product.description == "Redeem in game."
    # A time without an offset is read in settings.TIME_ZONE (Asia/Shanghai, +08:00).
    assert product.sale_starts_at == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert product.sale_ends_at == datetime(2030, 1, 2, 20, 0, tzinfo=UTC)
    assert "Created product GENSHIN-60" in capsys.readouterr().out


def test_defaults():
    call_command("create_product", "--sku", "PLAIN", "--title", "Plain", "--price", "9.9")
    product = Product.objects.get(sku="PLAIN")
    assert product.price == Decimal("9.90") and product.currency == settings.DEFAULT_CURRENCY
    assert product.sale_starts_at is None and product.sale_ends_at is None and product.min_page_seconds == 2
    assert product.is_active and product.category is None


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--price", "abc"], "Not a price"),
        (["--price", "0"], "price:"),
        (["--price", "-1.00"], "price:"),
        (["--price", "1.999"], "price:"),
        (["--price", "NaN"], "price:"),
        (["--per-buyer-limit", "-1"], "per_buyer_limit:"),
        (["--max-per-order", "0"], "max_per_order:"),
        (["--min-page-seconds", "-3"], "min_page_seconds:"),
        (["--currency", "yuan"], "currency:"),
        (["--starts-at", "2030-01-02T00:00:00", "--ends-at", "2030-01-01T00:00:00"], "sale_ends_at:"),
        (["--starts-at", "tomorrow"], "Not an ISO 8601 time"),
        (["--ends-at", "2030-13-45"], "Not an ISO 8601 time"),
        (["--category", "no-such-category"], "No category"),
        (["--sku", "has space"], "sku:"),
        (["--title", "   "], "title:"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(extra, reason):
    args = {"--lang": "en", "--sku": "GOOD-SKU", "--title": "Good", "--price": "9.90"}
    for flag, value in zip(extra[::2], extra[1::2], strict=False):
        args[flag] = value
    with pytest.raises(CommandError, match=reason):
        call_command("create_product", *[part for pair in args.items() for part in pair])
    assert not Product.objects.exists()


def test_duplicate_sku_is_refused_and_the_first_is_unchanged():
    ProductFactory(sku="TAKEN", title="First")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_product", "--lang", "en", "--sku", "TAKEN", "--title", "Second", "--price", "1.00")
    assert list(Product.objects.values_list("title", flat=True)) == ["First"]


def test_service_reports_every_bad_field_at_once():
    with pytest.raises(InvalidInput) as caught:
        product_create(sku="", title="", price="-1", per_buyer_limit=0, max_per_order=0, currency="cny")
    assert caught.value.code == "invalid"
    assert set(caught.value.extra["fields"]) == {
        "sku",
        "title",
        "price",
        "per_buyer_limit",
        "max_per_order",
        "currency",
    }
    assert not Product.objects.exists()


def test_service_refuses_a_naive_time():
    with pytest.raises(InvalidInput) as caught:
        product_create(sku="X", title="X", price="1.00", sale_starts_at=datetime.now() + timedelta(days=1))
    assert "sale_starts_at" in caught.value.extra["fields"]


def test_bad_input_exits_non_zero_from_the_shell():
    """The exit status is what a deploy script sees."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cardshop.settings.test"}
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "create_product",
            "--lang",
            "en",
            "--sku",
            "S",
            "--title",
            "T",
            "--price",
            "nine",
        ],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Not a price: 'nine'" in result.stderr


def test_create_product_of_each_delivery_kind(capsys):
    call_command(
        "create_product",
        "--sku",
        "TOPUP",
        "--title",
        "Top-up",
        "--price",
        "10",
        "--delivery",
        "manual",
        "--stock",
        "30",
    )
    call_command(
        "create_product",
        "--sku",
        "DL",
        "--title",
        "Download",
        "--price",
        "5",
        "--delivery",
        "reusable_key",
        "--stock",
        "100",
        "--reusable-key",
        "DL-CODE-1",
    )
    manual, reusable = Product.objects.get(sku="TOPUP"), Product.objects.get(sku="DL")
    assert (manual.delivery_kind, manual.stock_quantity) == ("manual", 30)
    assert (reusable.delivery_kind, reusable.stock_quantity) == ("reusable_key", 100)
    assert reusable.reusable_key_encrypted and "DL-CODE-1" not in reusable.reusable_key_encrypted


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--delivery", "reusable_key", "--stock", "5"], "reusable_key"),
        (["--stock", "5"], "stock_quantity"),
        (["--delivery", "manual", "--stock", "-1"], "stock_quantity"),
    ],
)
def test_create_product_refuses_a_delivery_that_does_not_add_up(args, field):
    with pytest.raises(CommandError, match=field):
        call_command("create_product", "--sku", "BAD", "--title", "Bad", "--price", "1", *args)
    assert not Product.objects.filter(sku="BAD").exists()
