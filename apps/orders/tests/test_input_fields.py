"""The product's checkout fields: checked before anything is reserved, sealed
before Redis sees them, kept sealed on the order, opened for the merchant."""

import json

import pytest
from django.utils import translation

from apps.catalog.models import ProductInputField
from apps.orders.exceptions import InvalidInput
from apps.orders.input_fields import order_input_values
from apps.orders.models import Order
from apps.orders.services import persistence
from apps.orders.services.checkout import order_checkout
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import persist_queue_key, reservations_key
from apps.stock.selectors import stock_remaining

from .support import persist_task_marked_waiting, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def product_with_fields():
    product = product_with_keys(keys=5)
    ProductInputField.objects.create(
        product=product, key="account_id", label_zh="游戏账号", label_en="Game account id", pattern=r"[0-9]{6,12}"
    )
    ProductInputField.objects.create(
        product=product, key="region", label_zh="区服", label_en="Region", kind="select", choices="Asia\nEurope\n"
    )
    ProductInputField.objects.create(
        product=product, key="note", label_zh="备注", label_en="Note", required=False, max_length=10
    )
    return product


def buy(product, fields):
    return order_checkout(sku=product.sku, email="buyer@example.com", quantity=1, fields=fields)


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        (None, {"fields.account_id", "fields.region"}),
        ({"account_id": "12ab", "region": "Asia"}, {"fields.account_id"}),
        ({"account_id": "123456", "region": "Mars"}, {"fields.region"}),
        ({"account_id": "123456", "region": "Asia", "note": "x" * 11}, {"fields.note"}),
        ({"account_id": ["123456"], "region": "Asia"}, {"fields.account_id"}),
    ],
)
def test_bad_values_are_refused_per_field_and_reserve_nothing(fields, refused):
    product = product_with_fields()
    with translation.override("en"), pytest.raises(InvalidInput) as caught:
        buy(product, fields)
    assert set(caught.value.extra["fields"]) == refused
    if "fields.account_id" in refused:
        assert caught.value.extra["fields"]["fields.account_id"][0].startswith("Game account id: ")
    assert stock_remaining(product_id=product.id) == 5


def test_values_are_sealed_in_redis_and_on_the_order_and_open_for_the_merchant():
    product = product_with_fields()
    persist_task_marked_waiting(product)
    result = buy(product, {"account_id": "987654321", "region": "Europe", "note": ""})
    client = stock_redis()
    stored = client.hget(reservations_key(product.id), result.order_no) + b"".join(
        client.lrange(persist_queue_key(product.id), 0, -1)
    )
    assert b"987654321" not in stored and b"Europe" not in stored  # P5
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=result.order_no)
    assert "987654321" not in order.input_values
    with translation.override("en"):
        assert order_input_values(order) == [("Game account id", "987654321"), ("Region", "Europe")]
    with translation.override("zh-hans"):
        assert order_input_values(order) == [("游戏账号", "987654321"), ("区服", "Europe")]


def test_the_api_takes_fields_and_the_product_api_lists_them(client):
    product = product_with_fields()
    listed = client.get(f"/api/v1/products/{product.sku}", headers={"Accept-Language": "en"}).json()["input_fields"]
    assert [(f["key"], f["label"], f["type"], f["required"]) for f in listed] == [
        ("account_id", "Game account id", "text", True),
        ("region", "Region", "select", True),
        ("note", "Note", "text", False),
    ]
    body = {"sku": product.sku, "email": "a@x.com", "quantity": 1, "fields": {"account_id": "1234567"}}
    refused = client.post("/api/v1/orders", data=json.dumps(body), content_type="application/json")
    assert refused.status_code == 400 and set(refused.json()["fields"]) == {"fields.region"}
    body["fields"]["region"] = "Asia"
    placed = client.post("/api/v1/orders", data=json.dumps(body), content_type="application/json")
    assert placed.status_code == 202
    persistence.order_persist_queued()
    assert order_input_values(Order.objects.get(order_no=placed.json()["order_no"]))[0][1] == "1234567"
