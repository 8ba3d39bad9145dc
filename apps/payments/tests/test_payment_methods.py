"""Choosing how to pay: the order lists the methods it can be paid with, and
POST /api/v1/orders/<no>/payments opens a payment with one of them."""

import json

import pytest

from apps.orders.models import Order
from apps.orders.services import persistence
from apps.orders.tests.support import checkout, product_with_keys
from apps.payments.providers.sandbox import SandboxProvider

pytestmark = pytest.mark.django_db(transaction=True)


def start(client, order_no, token, method, **headers):
    return client.post(
        f"/api/v1/orders/{order_no}/payments",
        data=json.dumps({"method": method}),
        content_type="application/json",
        headers={"X-Order-Token": token, **headers},
    )


def order(client, result):
    return client.get(f"/api/v1/orders/{result.order_no}", headers={"X-Order-Token": result.access_token}).json()


def test_an_unpaid_order_lists_its_methods_and_opens_a_payment_with_one(client):
    product = product_with_keys(keys=2)
    result = checkout(product)
    assert order(client, result)["payment_methods"] == ["sandbox"]  # queued: payable already
    persistence.order_persist_queued()
    assert order(client, result)["payment_methods"] == ["sandbox"]

    response = start(client, result.order_no, result.access_token, "sandbox")

    assert response.status_code == 201
    body = response.json()
    assert body["method"] == "sandbox" and body["qr_code"] is None
    # The sandbox's page is this site's own: the token goes along.
    assert body["pay_url"] == f"/pay/sandbox/{result.order_no}?token={result.access_token}"
    assert client.get(body["pay_url"]).status_code == 200


@pytest.mark.parametrize("method", ["stripe", "epay.alipay", "", None, 7])
def test_a_method_the_order_cannot_use_is_refused(client, method):
    product = product_with_keys(keys=1)
    result = checkout(product)
    response = start(client, result.order_no, result.access_token, method)
    assert response.status_code == 400 and response.json()["error"] == "method_unavailable"


def test_a_provider_that_does_not_take_the_currency_is_not_offered(client, monkeypatch):
    monkeypatch.setattr(SandboxProvider, "currencies", frozenset({"USD"}))
    product = product_with_keys(keys=1, currency="CNY")
    result = checkout(product)
    assert order(client, result)["payment_methods"] == []
    assert start(client, result.order_no, result.access_token, "sandbox").status_code == 400


def test_only_an_order_that_can_be_paid_opens_a_payment(client):
    product = product_with_keys(keys=1)
    result = checkout(product)
    persistence.order_persist_queued()
    assert start(client, result.order_no, "wrong", "sandbox").status_code == 404
    Order.objects.filter(order_no=result.order_no).update(status=Order.Status.EXPIRED)
    response = start(client, result.order_no, result.access_token, "sandbox")
    assert response.status_code == 409 and response.json()["error"] == "not_payable"
    assert order(client, result)["payment_methods"] == []


def test_the_merchant_hides_renames_and_orders_the_methods(client, admin_client, monkeypatch, settings):
    from apps.payments.models import PaymentMethodChoice
    from apps.payments.providers.base import PaymentProvider, PaymentStart

    class TwoChannels(PaymentProvider):
        name = "twochannels"
        channels = ("alipay", "wxpay")

        def payment_start(self, *, request):
            return PaymentStart(pay_url="https://pay.example/x")

        def notification_verify(self, *, body, headers, query):
            raise NotImplementedError

        def refund_start(self, *, order_no, event_id, amount, currency):
            raise NotImplementedError

    monkeypatch.setitem(
        __import__("apps.payments.providers", fromlist=["_PROVIDERS"])._PROVIDERS, "twochannels", TwoChannels
    )
    settings.PAYMENT_PROVIDERS = ["sandbox", "twochannels"]
    product = product_with_keys(keys=1)
    result = checkout(product)
    assert order(client, result)["payment_methods"] == ["sandbox", "twochannels.alipay", "twochannels.wxpay"]

    # Through the admin: WeChat first, under the merchant's label; the sandbox hidden.
    for method, label, position, enabled in (("twochannels.wxpay", "微信", 1, True), ("sandbox", "", 9, False)):
        response = admin_client.post(
            "/admin/payments/paymentmethodchoice/add/",
            {"method": method, "label": label, "position": position, "enabled": "on" if enabled else ""},
        )
        assert response.status_code == 302, response.content.decode()[:500]
    assert PaymentMethodChoice.objects.count() == 2

    assert order(client, result)["payment_methods"] == ["twochannels.wxpay", "twochannels.alipay"]
    page = client.get(f"/orders/{result.order_no}?token={result.access_token}").content.decode()
    assert 'value="twochannels.wxpay" class="button button-pay">微信<' in page
    assert 'value="sandbox"' not in page
    assert start(client, result.order_no, result.access_token, "sandbox").status_code == 400
