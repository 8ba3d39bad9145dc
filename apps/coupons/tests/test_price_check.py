"""POST /api/v1/coupons/check: the product page's live total."""

import json
from decimal import Decimal

import pytest

from apps.catalog.models import ProductPriceTier
from apps.orders.services.checkout import order_checkout
from apps.orders.tests.support import product_with_keys

from .factories import CouponFactory

pytestmark = pytest.mark.django_db(transaction=True)


def check(client, body, **headers):
    return client.post("/api/v1/coupons/check", data=json.dumps(body), content_type="application/json", headers=headers)


def test_the_total_with_tier_and_coupon(client):
    product = product_with_keys(keys=20, max_per_order=20)
    ProductPriceTier.objects.create(product=product, min_quantity=10, unit_price=Decimal("4.50"))
    CouponFactory(code="TEN", kind="percent", value=Decimal("10"))
    plain = check(client, {"sku": product.sku, "quantity": 2}).json()
    assert (plain["unit_price"], plain["amount"], plain["coupon"], plain["display"]["amount"]) == (
        "9.90",
        "19.80",
        None,
        "¥19.80",
    )
    body = check(client, {"sku": product.sku, "quantity": 10, "coupon": "ten"}).json()
    assert body["unit_price"] == "4.50" and body["subtotal"] == "45.00"
    assert (body["coupon"], body["discount"], body["amount"]) == ("TEN", "4.50", "40.50")
    assert body["display"]["discount"] == "¥4.50"


def test_refusals_carry_the_coupon_codes_in_the_requests_language(client):
    product = product_with_keys(keys=5)
    CouponFactory(code="ONE", max_uses_per_buyer=1)
    order_checkout(sku=product.sku, email="a@x.com", quantity=1, coupon="one")
    refused = check(client, {"sku": product.sku, "quantity": 1, "coupon": "nope"}, **{"Accept-Language": "en"})
    assert (refused.status_code, refused.json()["error"]) == (400, "coupon_invalid")
    assert refused.json()["detail"] == "This coupon code is not valid."
    chinese = check(client, {"sku": product.sku, "quantity": 1, "coupon": "nope"}, **{"Accept-Language": "zh-hans"})
    assert chinese.json()["detail"] == "此优惠券码无效。"
    mine = check(client, {"sku": product.sku, "quantity": 1, "coupon": "one", "email": "A@x.com"})
    assert (mine.status_code, mine.json()["error"]) == (409, "coupon_limit_exceeded")
    assert check(client, {"sku": product.sku, "quantity": 1, "coupon": "one", "email": "b@x.com"}).status_code == 200


def test_bad_input(client):
    product = product_with_keys(keys=5, max_per_order=5)
    assert check(client, {"sku": "nope", "quantity": 1}).status_code == 404
    bad = check(client, {"sku": product.sku, "quantity": 6})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid")
    assert check(client, {"sku": product.sku, "quantity": "2"}).status_code == 400


def test_the_product_page_carries_the_coupon_field_and_total(client):
    product = product_with_keys(keys=5)
    page = client.get(f"/p/{product.sku}", headers={"Accept-Language": "en"}).content.decode()
    assert 'name="coupon"' in page and 'data-price-url="/api/v1/coupons/check"' in page
    assert "js/checkout_pricing.js" in page and "Have a coupon?" in page
