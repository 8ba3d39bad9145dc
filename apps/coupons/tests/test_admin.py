"""The merchant's screens: coupons, and the product's tiers and checkout
fields as inlines (a tier saved in the admin reaches the gate)."""

from decimal import Decimal

import pytest

from apps.catalog.models import ProductInputField
from apps.coupons.models import Coupon
from apps.orders.tests.support import product_with_keys
from apps.stock.redis import redis_text, stock_redis
from apps.stock.redis_keys import rules_key
from testing.admin_forms import admin_form_values

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_merchant_adds_a_coupon_in_any_case(admin_client):
    product = product_with_keys(keys=1)
    response = admin_client.post(
        "/admin/coupons/coupon/add/",
        {"code": "summer5", "is_active": "on", "kind": "fixed", "value": "5.00", "products": [product.id]},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    coupon = Coupon.objects.get()
    assert coupon.code == "SUMMER5" and list(coupon.products.all()) == [product]
    duplicate = admin_client.post(
        "/admin/coupons/coupon/add/", {"code": "Summer5", "is_active": "on", "kind": "percent", "value": "10"}
    )
    assert duplicate.status_code == 200 and Coupon.objects.count() == 1
    too_much = admin_client.post(
        "/admin/coupons/coupon/add/", {"code": "HALF", "is_active": "on", "kind": "percent", "value": "150"}
    )
    assert too_much.status_code == 200 and not Coupon.objects.filter(code="HALF").exists()
    assert admin_client.get(f"/admin/coupons/coupon/{coupon.id}/change/").status_code == 200


def test_tiers_and_fields_saved_in_the_product_admin_reach_the_gate(admin_client):
    product = product_with_keys(keys=1)
    url = f"/admin/catalog/product/{product.id}/change/"
    form = admin_form_values(admin_client, url)
    form.update(
        {
            "price": "9.90",
            "price_tiers-TOTAL_FORMS": "1",
            "price_tiers-0-min_quantity": "3",
            "price_tiers-0-unit_price": "8.00",
            "input_fields-TOTAL_FORMS": "1",
            "input_fields-0-key": "uid",
            "input_fields-0-kind": "text",
            "input_fields-0-required": "on",
            "input_fields-0-sort_order": "0",
            "input_fields-0-label_zh": "账号",
            "input_fields-0-label_en": "Account",
            "input_fields-0-pattern": "[0-9]+",
            "input_fields-0-max_length": "20",
            "input_fields-0-choices": "",
            "_save": "Save",
        }
    )
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert redis_text(stock_redis().hget(rules_key(product.id), "tiers")) == "3:8.00"
    assert ProductInputField.objects.get(product=product).label_en == "Account"
    # The saved page, posted back with a bad pattern: nothing on it is saved,
    # neither the field nor the tier changed alongside it.
    bad = admin_form_values(admin_client, url)
    assert bad["price_tiers-INITIAL_FORMS"] == bad["input_fields-INITIAL_FORMS"] == "1"
    bad.update({"input_fields-0-pattern": "[0-9", "price_tiers-0-unit_price": "7.00", "_save": "Save"})
    refused = admin_client.post(url, bad)
    assert refused.status_code == 200 and "这不是有效的正则表达式。" in refused.content.decode()
    assert ProductInputField.objects.get(product=product).pattern == "[0-9]+"
    assert Decimal(redis_text(stock_redis().hget(rules_key(product.id), "tiers")).split(":")[1]) == Decimal("8.00")


def test_a_merchant_turns_a_coupon_off_rather_than_deleting_it(admin_client):
    coupon = Coupon.objects.create(code="OFF", kind="fixed", value=Decimal("1.00"))
    page = admin_client.get(f"/admin/coupons/coupon/{coupon.id}/change/", headers={"Accept-Language": "en"})
    text = page.content.decode()
    assert "Turn a coupon off (untick" in text
    assert f"/admin/coupons/coupon/{coupon.id}/delete/" not in text
    assert admin_client.post(f"/admin/coupons/coupon/{coupon.id}/delete/", {"post": "yes"}).status_code == 403
    bulk = admin_client.post(
        "/admin/coupons/coupon/", {"action": "delete_selected", "_selected_action": [coupon.id], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)
    assert Coupon.objects.filter(pk=coupon.pk).exists()
