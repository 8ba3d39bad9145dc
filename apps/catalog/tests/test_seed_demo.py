import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from apps.cardkeys.models import CardKey
from apps.catalog.management.commands.seed_demo import FLASH_SKU
from apps.catalog.models import Category, Product
from apps.stock.selectors import stock_remaining


def admin_logs_in(client, password: str) -> bool:
    """Through the admin's login page, as a person would (django-axes counts
    logins per client address, so it wants the request that Client.login() lacks)."""
    response = client.post("/admin/login/", {"username": "admin", "password": password, "next": "/admin/"})
    return response.status_code == 302 and response["Location"] == "/admin/"


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", "--lang", "en", stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_seed_demo_twice_duplicates_nothing(client):
    before = timezone.now()
    first = seed()
    products = {p.sku: p for p in Product.objects.all()}
    keys = {sku: CardKey.objects.filter(product=p).count() for sku, p in products.items()}
    assert Category.objects.count() == 3
    assert 5 <= len(products) <= 6
    assert all(count > 0 for count in keys.values())
    flash = products[FLASH_SKU]
    assert before + timedelta(seconds=55) <= flash.sale_starts_at <= timezone.now() + timedelta(seconds=61)
    password = re.search(r"Password:\s+(\S+)", first).group(1)
    assert "http://" in first and "/admin/" in first and "Username:    admin" in first
    assert admin_logs_in(client, password)
    # warm_stock ran: the stock gate knows what there is to sell.
    assert stock_remaining(product_id=flash.id) == keys[FLASH_SKU]

    second = seed()
    assert Category.objects.count() == 3
    assert {p.sku for p in Product.objects.all()} == set(products)
    assert {sku: CardKey.objects.filter(product__sku=sku).count() for sku in products} == keys
    assert get_user_model().objects.filter(username="admin").count() == 1
    new_password = re.search(r"Password:\s+(\S+)", second).group(1)
    assert new_password != password
    client.logout()
    assert admin_logs_in(client, new_password)
    # The storefront shows the seeded shop, the flash sale with its countdown.
    assert client.get("/").status_code == 200
    assert "data-countdown" in client.get(f"/p/{FLASH_SKU}").content.decode()
