"""What every API view shares (apps.core.api): one error shape, translated
404s, no CSRF, JSON whatever the client accepts."""

from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import translation

from apps.orders.exceptions import OrderNotFound, ProductNotFound
from apps.orders.tests.support import product_with_keys
from apps.payments.sandbox_server import sandbox_notification_deliver_task

pytestmark = pytest.mark.django_db(transaction=True)


def _expected(error, language: str) -> dict:
    with translation.override(language):
        return error.as_json()


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_an_unknown_order_or_product_is_one_translated_404_body(client, language):
    product = product_with_keys(keys=1)
    order_no = client.post(
        "/api/v1/orders", data={"sku": product.sku, "email": "a@x.com"}, content_type="application/json"
    ).json()["order_no"]
    headers = {"Accept-Language": language, "X-Order-Token": "wrong"}
    order_answers = [
        client.get("/api/v1/orders/261122-1-NOSUCH", headers=headers),
        client.get(f"/api/v1/orders/{order_no}", headers=headers),  # a wrong token answers the same
        client.post(f"/api/v1/payments/sandbox/{order_no}/pay", headers=headers),
        client.get(f"/orders/{order_no}/status", headers=headers),  # what the order page polls
    ]
    for response in order_answers:
        assert (response.status_code, response.json()) == (404, _expected(OrderNotFound(), language))
    for response in (
        client.get("/api/v1/products/NOPE", headers=headers),
        client.post(
            "/api/v1/orders", data={"sku": "NOPE", "email": "a@x.com"}, content_type="application/json", headers=headers
        ),
    ):
        assert (response.status_code, response.json()) == (404, _expected(ProductNotFound(), language))
    assert _expected(OrderNotFound(), "zh-hans") != _expected(OrderNotFound(), "en")


def test_checkout_needs_no_csrf_token_even_with_a_logged_in_session():
    # Token-authenticated API: DRF's SessionAuthentication would demand a
    # CSRF token from a client with a session, and refuse with 403.
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("buyer", password="x" * 12))
    product = product_with_keys(keys=1)
    response = client.post(
        "/api/v1/orders", data={"sku": product.sku, "email": "a@x.com"}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    order = response.json()
    with mock.patch.object(sandbox_notification_deliver_task, "delay"):
        paid = client.post(order["pay_url"], headers={"X-Order-Token": order["access_token"]})
    assert paid.status_code == 202, paid.content


def test_a_refusal_by_drf_itself_has_the_same_error_shape(client):
    wrong_method = client.get("/api/v1/orders")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed" and wrong_method.json()["detail"]
    assert client.options("/api/v1/orders").status_code == 405


def test_the_api_answers_json_whatever_the_client_accepts(client):
    product = product_with_keys(keys=1)
    response = client.get(f"/api/v1/products/{product.sku}", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["sku"] == product.sku
