"""Wholesale tier prices: kept by the gate (the rules hash the checkout script
reads), applied at checkout, stored on the order, shown on the page and API."""

from decimal import Decimal

import pytest
from django.utils import translation

from apps.catalog.models import ProductPriceTier
from apps.orders.models import Order
from apps.orders.pricing import tier_unit_price
from apps.orders.services import persistence
from apps.stock.redis import redis_text, stock_redis
from apps.stock.redis_keys import rules_key
from apps.stock.services import stock_reservation_release

from .support import checkout, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def tiered_product(**fields):
    product = product_with_keys(keys=200, max_per_order=100, per_buyer_limit=1000, max_unpaid_per_buyer=50, **fields)
    ProductPriceTier.objects.create(product=product, min_quantity=50, unit_price=Decimal("4.00"))
    ProductPriceTier.objects.create(product=product, min_quantity=10, unit_price=Decimal("4.50"))
    return product


def test_saving_tiers_publishes_them_to_the_gate_in_order():
    product = tiered_product()
    rules = stock_redis().hget(rules_key(product.id), "tiers")
    assert redis_text(rules) == "10:4.50 50:4.00"
    ProductPriceTier.objects.filter(product=product, min_quantity=50).delete()
    assert redis_text(stock_redis().hget(rules_key(product.id), "tiers")) == "10:4.50"


@pytest.mark.parametrize(
    ("quantity", "unit", "amount"),
    [(1, "9.90", "9.90"), (9, "9.90", "89.10"), (10, "4.50", "45.00"), (49, "4.50", "220.50"), (50, "4.00", "200.00")],
)
def test_the_order_pays_the_highest_tier_it_reaches(quantity, unit, amount):
    product = tiered_product()
    result = checkout(product, quantity=quantity)
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=result.order_no)
    assert (order.unit_price, order.amount) == (Decimal(unit), Decimal(amount))
    # The page's preview (pricing.tier_unit_price) makes the gate's choice.
    tiers = tuple(ProductPriceTier.objects.filter(product=product).values_list("min_quantity", "unit_price"))
    assert tier_unit_price(price=product.price, tiers=tiers, quantity=quantity) == Decimal(unit)
    stock_reservation_release(product_id=product.id, order_no=result.order_no)


def test_the_gate_price_wins_over_a_stale_cached_product():
    """The process's cached product says no tiers; the gate's rules decide."""
    product = product_with_keys(keys=20, max_per_order=20, per_buyer_limit=20)
    checkout(product, email="warm@x.com")  # caches the product without tiers
    ProductPriceTier.objects.create(product=product, min_quantity=2, unit_price=Decimal("1.00"))
    result = checkout(product, quantity=2)
    persistence.order_persist_queued()
    assert Order.objects.get(order_no=result.order_no).unit_price == Decimal("1.00")


def test_tiers_shown_on_the_product_page_and_api(client):
    product = tiered_product()
    body = client.get(f"/api/v1/products/{product.sku}").json()
    assert body["price_tiers"] == [
        {"min_quantity": 10, "unit_price": "4.50"},
        {"min_quantity": 50, "unit_price": "4.00"},
    ]
    page = client.get(f"/p/{product.sku}", headers={"Accept-Language": "en"}).content.decode()
    assert "From 10 pieces: ¥4.50 each" in page and "From 50 pieces: ¥4.00 each" in page
    with translation.override("zh-hans"):
        page = client.get(f"/p/{product.sku}", headers={"Accept-Language": "zh-hans"}).content.decode()
    assert "¥4.50" in page
