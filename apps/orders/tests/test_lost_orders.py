"""An order answered 202 and then lost before it reached MariaDB (issue 12:
the gate Redis failed over to an empty replica, or was flushed): its page and
its API answer tell the buyer plainly that it was not placed and to buy
again, never a bare 404, and no payment can be started for it. A made-up
number or a wrong token still gets the plain 404, which reveals nothing.

The loss is a FLUSHALL of this run's keys (the prefix keeps other runs' data)."""

import json
import secrets

import pytest
from django.conf import settings
from django.test import Client

from apps.orders.identity import access_token_for, access_token_verify, order_number_new
from apps.orders.models import Order
from apps.orders.services import persistence
from apps.payments.models import ProviderPayment
from apps.stock.redis import stock_redis

from .support import persist_task_marked_waiting, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def gate_flushed() -> None:
    """What FLUSHALL does to this environment: every key of the run gone."""
    client = stock_redis()
    keys = list(client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)


def accepted_then_lost(client, product) -> dict:
    persist_task_marked_waiting(product)  # its reservation stays queued in Redis only
    response = client.post(
        "/api/v1/orders",
        data=json.dumps({"sku": product.sku, "email": "lost@x.com", "quantity": 1}),
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert client.get(body["status_url"], headers={"X-Order-Token": body["access_token"]}).json()["status"] == "queued"
    gate_flushed()
    assert not Order.objects.filter(order_no=body["order_no"]).exists()
    return body


def test_the_api_says_a_lost_order_was_not_placed(client):
    product = product_with_keys(keys=3)
    body = accepted_then_lost(client, product)

    answer = client.get(body["status_url"], headers={"X-Order-Token": body["access_token"]})
    assert answer.status_code == 410
    assert answer.json()["error"] == "order_not_placed"
    assert "buy again" in answer.json()["detail"].lower() or "重新购买" in answer.json()["detail"]
    assert client.get(f"{body['status_url']}?token={body['access_token']}").status_code == 410

    # The wrong token, or a number the shop never issued, learns nothing.
    wrong = client.get(body["status_url"], headers={"X-Order-Token": secrets.token_urlsafe(24)})
    assert (wrong.status_code, wrong.json()["error"]) == (404, "order_not_found")
    made_up = order_number_new(product_id=product.id)
    guessed = client.get(f"/api/v1/orders/{made_up}", headers={"X-Order-Token": body["access_token"]})
    assert (guessed.status_code, guessed.json()["error"]) == (404, "order_not_found")


def test_the_order_page_says_not_placed_and_links_to_buy_again(client):
    product = product_with_keys(keys=3, title="Moonlight Pass")
    body = accepted_then_lost(client, product)

    page = client.get(f"/orders/{body['order_no']}?token={body['access_token']}", headers={"Accept-Language": "en"})
    assert page.status_code == 410
    text = page.content.decode()
    assert "This order was not placed" in text and "Please buy again." in text
    assert f'href="/p/{product.sku}"' in text and "Buy Moonlight Pass again" in text
    # The page's poll (its URL carries the token: a flush loses sessions too) says the same.
    poll = client.get(f"/orders/{body['order_no']}/status?token={body['access_token']}")
    assert (poll.status_code, poll.json()["error"]) == (410, "order_not_placed")

    zh = client.get(f"/orders/{body['order_no']}?token={body['access_token']}", headers={"Accept-Language": "zh-hans"})
    assert zh.status_code == 410 and "这笔订单没有下成" in zh.content.decode()

    # Another browser (no checkout session) with a wrong token: the lookup form, as for any order.
    other = Client().get(f"/orders/{body['order_no']}?token=wrong")
    assert other.status_code == 200 and 'name="email"' in other.content.decode()


def test_no_payment_can_be_started_for_a_lost_order(client):
    product = product_with_keys(keys=3)
    body = accepted_then_lost(client, product)
    token = {"X-Order-Token": body["access_token"]}

    start = client.post(
        f"/api/v1/orders/{body['order_no']}/payments",
        data=json.dumps({"method": "sandbox"}),
        content_type="application/json",
        headers=token,
    )
    assert start.status_code == 404, start.content
    assert client.post(body["pay_url"], data="{}", content_type="application/json", headers=token).status_code == 404
    page_pay = client.post(f"/orders/{body['order_no']}/pay?token={body['access_token']}", {"method": "sandbox"})
    assert page_pay.status_code == 404
    assert not ProviderPayment.objects.filter(order_no=body["order_no"]).exists()
    assert not Order.objects.filter(order_no=body["order_no"]).exists()


def test_an_order_still_queued_or_persisted_is_never_called_lost(client):
    product = product_with_keys(keys=3)
    persist_task_marked_waiting(product)
    body = client.post(
        "/api/v1/orders",
        data=json.dumps({"sku": product.sku, "email": "kept@x.com", "quantity": 1}),
        content_type="application/json",
    ).json()
    headers = {"X-Order-Token": body["access_token"]}
    assert client.get(body["status_url"], headers=headers).json()["status"] == "queued"
    persistence.order_persist_queued(product_ids=[product.id])
    assert client.get(body["status_url"], headers=headers).json()["status"] == "awaiting_payment"
    # Persisted, then the gate lost: the record answers, not the gate.
    gate_flushed()
    assert client.get(body["status_url"], headers=headers).json()["status"] == "awaiting_payment"


def test_the_access_token_is_verifiable_from_the_number_alone(settings):
    order_no = order_number_new(product_id=7)
    token = access_token_for(order_no=order_no)
    assert access_token_verify(order_no=order_no, token=token)
    assert not access_token_verify(order_no=order_number_new(product_id=7), token=token)
    assert not access_token_verify(order_no=order_no, token=token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not access_token_verify(order_no=order_no, token="")
    settings.ORDER_TOKEN_KEY = "another-key-of-at-least-thirty-two-characters"
    assert not access_token_verify(order_no=order_no, token=token)
