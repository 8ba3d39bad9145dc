import json

import pytest
from django.utils import timezone

from apps.orders.models import Order
from apps.orders.services import payment, persistence
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key

from .support import product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def create(client, body, **headers):
    return client.post("/api/v1/orders", data=json.dumps(body), content_type="application/json", headers=headers)


def test_checkout_answers_202_with_the_contract_fields(client):
    product = product_with_keys(keys=2)
    response = create(client, {"sku": product.sku, "email": "a@x.com", "quantity": 1})
    assert response.status_code == 202
    body = response.json()
    assert set(body) >= {"order_no", "status", "access_token", "status_url", "pay_url"}
    assert body["status"] == "queued"
    status = client.get(body["status_url"], headers={"X-Order-Token": body["access_token"]})
    assert status.status_code == 200 and status.json()["status"] == "queued"
    assert client.get(body["status_url"] + "?token=" + body["access_token"]).status_code == 200
    assert client.get(body["status_url"], headers={"X-Order-Token": "wrong"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "bad", "quantity": 1}, "email"),
        ({"email": "a@x.com", "quantity": 0}, "quantity"),
        ({"email": "a@x.com", "quantity": 99}, "quantity"),
    ],
)
def test_bad_input_is_400_invalid_with_fields(client, body, field):
    product = product_with_keys(keys=2)
    response = create(client, {"sku": product.sku, **body})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid" and field in response.json()["fields"]
    assert int(stock_redis().get(stock_key(product.id))) == 2


def test_malformed_json_is_400(client):
    response = client.post("/api/v1/orders", data=b"{nope", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"] == "invalid"
    response = client.post("/api/v1/orders", data=b"[1]", content_type="application/json")
    assert response.status_code == 400


def test_refusals_are_409_with_stable_codes(client):
    product = product_with_keys(keys=1, per_buyer_limit=1)
    assert create(client, {"sku": product.sku, "email": "a@x.com"}).status_code == 202
    sold_out = create(client, {"sku": product.sku, "email": "b@x.com"})
    assert (sold_out.status_code, sold_out.json()["error"]) == (409, "sold_out")
    limited = product_with_keys(keys=5, per_buyer_limit=1)
    create(client, {"sku": limited.sku, "email": "a@x.com"})
    again = create(client, {"sku": limited.sku, "email": "a@x.com"})
    assert (again.status_code, again.json()["error"]) == (409, "limit_exceeded")
    later = product_with_keys(keys=5, sale_starts_at=timezone.now() + timezone.timedelta(days=1))
    early = create(client, {"sku": later.sku, "email": "a@x.com"})
    assert (early.status_code, early.json()["error"]) == (409, "sale_not_started")
    over = product_with_keys(keys=5, sale_ends_at=timezone.now() - timezone.timedelta(days=1))
    late = create(client, {"sku": over.sku, "email": "a@x.com"})
    assert (late.status_code, late.json()["error"]) == (409, "sale_ended")


def test_not_warmed_is_503_sale_paused_with_retry_after(client):
    product = product_with_keys(keys=5, warm=False)
    response = create(client, {"sku": product.sku, "email": "a@x.com"})
    assert response.status_code == 503
    assert response.json()["error"] == "sale_paused" and int(response["Retry-After"]) > 0


def test_unknown_product_is_404(client):
    response = create(client, {"sku": "NOPE", "email": "a@x.com"})
    assert (response.status_code, response.json()["error"]) == (404, "product_not_found")


def test_idempotency_header_returns_the_first_order(client):
    product = product_with_keys(keys=5)
    first = create(client, {"sku": product.sku, "email": "a@x.com"}, **{"Idempotency-Key": "abc"}).json()
    second = create(client, {"sku": product.sku, "email": "a@x.com"}, **{"Idempotency-Key": "abc"}).json()
    assert first["order_no"] == second["order_no"]


def test_delivered_order_shows_keys_only_to_the_token_holder(client, celery_eager):
    product = product_with_keys(keys=1)
    body = create(client, {"sku": product.sku, "email": "a@x.com"}).json()
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=body["order_no"])
    payment.order_mark_paid(
        order_no=order.order_no, provider="sandbox", event_id="e1", amount=order.amount, currency="CNY"
    )
    shown = client.get(body["status_url"], headers={"X-Order-Token": body["access_token"]}).json()
    assert shown["status"] == "delivered" and len(shown["keys"]) == 1
    hidden = client.get(body["status_url"], headers={"X-Order-Token": "x" + body["access_token"]})
    assert hidden.status_code == 404 and "keys" not in hidden.json()


def test_product_api(client):
    product = product_with_keys(keys=3)
    body = client.get(f"/api/v1/products/{product.sku}").json()
    assert body["sku"] == product.sku and body["price"] == "9.90" and body["stock_status"] == "low"
    assert body["page_token"]
    assert client.get("/api/v1/products/NOPE").status_code == 404


def test_the_order_says_until_when_it_can_be_paid(client, settings):
    """pay_deadline: the reservation's end while the order can be paid (queued
    or awaiting payment), null once it cannot."""
    settings.RESERVATION_TTL = 900
    product = product_with_keys(keys=2)
    body = create(client, {"sku": product.sku, "email": "a@x.com", "quantity": 1}).json()
    token = {"X-Order-Token": body["access_token"]}

    queued = client.get(body["status_url"], headers=token).json()
    deadline = timezone.datetime.fromisoformat(queued["pay_deadline"])
    assert 890 < (deadline - timezone.now()).total_seconds() <= 900

    persistence.order_persist_queued()
    awaiting = client.get(body["status_url"], headers=token).json()
    assert awaiting["status"] == "awaiting_payment"
    assert timezone.datetime.fromisoformat(awaiting["pay_deadline"]) == deadline

    Order.objects.filter(order_no=body["order_no"]).update(status=Order.Status.EXPIRED)
    assert client.get(body["status_url"], headers=token).json()["pay_deadline"] is None
