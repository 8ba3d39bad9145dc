"""Hostile input to the JSON API (issue 12, "API input"): bodies nested deep
enough to crash a parser, checkout from another site's form, non-integer
quantities, oversized bodies and an Idempotency-Key reused for another order.
Each is refused with the API's JSON error, and nothing is reserved."""

import json

import pytest

from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key

from .support import product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_bodies(depth: int) -> list[bytes]:
    """A deep body, and a checkout whose field holds the deep part."""
    return [nested(depth), b'{"sku": "X", "email": "a@x.com", "quantity": ' + nested(depth) + b"}"]


def create(client, body: dict, headers=None, **extra):
    return client.post(
        "/api/v1/orders", data=json.dumps(body), content_type="application/json", headers=headers or {}, **extra
    )


def stock_of(product) -> int:
    return int(stock_redis().get(stock_key(product.id)))


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_at_checkout_is_400_invalid(client, depth):
    product = product_with_keys(keys=2)
    for body in deep_bodies(depth):
        response = client.post("/api/v1/orders", data=body, content_type="application/json", **EN)
        assert response.status_code == 400, response.content[:200]
        assert response.json()["error"] == "invalid"
        assert response.json()["detail"] == "The body must be a JSON object."
    assert stock_of(product) == 2


def test_moderately_nested_json_is_still_parsed(client):
    # A body within the depth bound reaches validation as usual.
    product = product_with_keys(keys=2)
    response = client.post(
        "/api/v1/orders",
        data=json.dumps({"sku": product.sku, "email": "a@x.com", "quantity": [[[1]]]}),
        content_type="application/json",
    )
    assert response.status_code == 400 and "quantity" in response.json()["fields"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
)
def test_checkout_refuses_a_body_that_is_not_declared_json_with_415(client, content_type):
    """What another site's form can send without a CORS preflight: text/plain
    (a JSON-looking body all the same), a form, a multipart form."""
    product = product_with_keys(keys=2)
    body = json.dumps({"sku": product.sku, "email": "a@x.com", "quantity": 1})
    response = client.generic("POST", "/api/v1/orders", body, content_type=content_type, **EN)
    assert response.status_code == 415
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {
        "error": "unsupported_media_type",
        "detail": "Send the body as JSON, with the header Content-Type: application/json.",
    }
    assert stock_of(product) == 2


def test_checkout_takes_json_with_a_charset(client):
    product = product_with_keys(keys=2)
    body = json.dumps({"sku": product.sku, "email": "a@x.com", "quantity": 1})
    response = client.post("/api/v1/orders", body, content_type="application/json; charset=utf-8")
    assert response.status_code == 202


@pytest.mark.parametrize("quantity", ["1", 1.0, "1.0", True, None, "one", 1.5])
def test_a_quantity_that_is_not_a_json_integer_is_400_invalid(client, quantity):
    product = product_with_keys(keys=2)
    response = create(client, {"sku": product.sku, "email": "a@x.com", "quantity": quantity}, **EN)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert response.json()["fields"] == {"quantity": ["Quantity must be a whole number of at least 1."]}
    assert stock_of(product) == 2


def test_the_storefront_form_still_buys_with_its_text_quantity(client):
    product = product_with_keys(keys=3)
    response = client.post(f"/p/{product.sku}/buy", {"email": "a@x.com", "quantity": "2"})
    assert response.status_code == 302 and "/orders/" in response["Location"]
    assert stock_of(product) == 1


def test_an_oversized_body_gets_the_json_error(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    product = product_with_keys(keys=2)
    body = {"sku": product.sku, "email": "a@x.com", "quantity": 1, "pad": "x" * 2000}
    response = create(client, body, **EN)
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"error": "request_too_large", "detail": "The request body is too large."}
    assert stock_of(product) == 2


# --- Idempotency-Key reuse


def test_the_same_key_with_the_same_body_returns_the_first_order(client):
    product = product_with_keys(keys=5)
    body = {"sku": product.sku, "email": "a@x.com", "quantity": 2}
    first = create(client, body, {"Idempotency-Key": "k-1"})
    again = create(client, body, {"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["order_no"] == first.json()["order_no"]
    assert again.json()["access_token"] == first.json()["access_token"]
    assert stock_of(product) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": 1},
        # The same buyer for the limits and the key's scope, but another address to mail.
        {"email": "A+shop@x.com"},
    ],
)
def test_the_same_key_with_another_body_is_422(client, change):
    product = product_with_keys(keys=5)
    body = {"sku": product.sku, "email": "a@x.com", "quantity": 2}
    first = create(client, body, {"Idempotency-Key": "k-1"})
    reused = create(client, {**body, **change}, {"Idempotency-Key": "k-1"}, **EN)
    assert first.status_code == 202
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    assert "order_no" not in reused.json() and "access_token" not in reused.json()
    assert reused.json()["detail"].startswith("This Idempotency-Key was already used")
    assert stock_of(product) == 3
    # The first request's retry still gets its order.
    assert create(client, body, {"Idempotency-Key": "k-1"}).json()["order_no"] == first.json()["order_no"]


def test_the_same_key_for_another_product_is_another_purchase(client):
    """The key's scope is (buyer, product): the record lives under the
    product's hash tag, the one place checkout's single Redis call can read.
    So the same string sent for another sku is that product's own key, and
    buys what it names (docs/architecture.md, "Idempotency")."""
    one, other = product_with_keys(keys=5), product_with_keys(keys=5)
    first = create(client, {"sku": one.sku, "email": "a@x.com", "quantity": 1}, {"Idempotency-Key": "k-1"})
    second = create(client, {"sku": other.sku, "email": "a@x.com", "quantity": 1}, {"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202
    assert first.json()["order_no"] != second.json()["order_no"]
    assert (stock_of(one), stock_of(other)) == (4, 4)


def test_the_new_refusals_are_translated(client):
    product = product_with_keys(keys=2)
    body = json.dumps({"sku": product.sku, "email": "a@x.com", "quantity": 1})
    zh = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
    refused = client.generic("POST", "/api/v1/orders", body, content_type="text/plain", **zh)
    assert refused.json()["detail"] == "请以 JSON 发送请求体，并带上请求头 Content-Type: application/json。"
    deep = client.post("/api/v1/orders", data=nested(1_000), content_type="application/json", **zh)
    assert deep.json()["detail"] == "请求体必须是一个 JSON 对象。"
