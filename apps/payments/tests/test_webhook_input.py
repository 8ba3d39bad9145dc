"""Hostile bodies at the payment endpoints (issue 12, "API input"): JSON nested
deep enough to crash a parser, and bodies over DATA_UPLOAD_MAX_MEMORY_SIZE.
The sandbox's pay call answers with the API's JSON error; each webhook that
reads JSON (sandbox, Stripe, WeChat Pay; epay and Alipay notify with forms)
refuses in its provider's terms, as it refuses other malformed bodies. None
is a 500, and nothing changes."""

import json

import pytest

from apps.orders.tests.factories import OrderFactory
from apps.payments.sandbox_server import SIGNATURE_HEADER, notification_signature

from .fake_stripe import stripe_signature
from .fake_wechatpay import FakeWechatPay
from .stripe_support import _assert_unchanged

DEPTHS = [1_000, 100_000]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int) -> bytes:
    return b'{"event_id": "e", "data": ' + nested(depth) + b"}"


@pytest.mark.django_db
@pytest.mark.parametrize("depth", DEPTHS)
def test_sandbox_pay_with_a_deep_body_is_400_invalid(client, sandbox_sent, depth):
    order, _token = OrderFactory.create_with_token()
    for body in (nested(depth), deep_object(depth)):
        response = client.post(
            f"/api/v1/payments/sandbox/{order.order_no}/pay", data=body, content_type="application/json"
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid"
    sandbox_sent.assert_not_called()


@pytest.mark.django_db
def test_sandbox_pay_with_an_oversized_body_gets_the_json_error(client, settings, sandbox_sent):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    order, token = OrderFactory.create_with_token()
    response = client.post(
        f"/api/v1/payments/sandbox/{order.order_no}/pay",
        data=json.dumps({"token": token, "pad": "x" * 2000}),
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 413
    assert response.json() == {"error": "request_too_large", "detail": "The request body is too large."}
    sandbox_sent.assert_not_called()


@pytest.mark.django_db
@pytest.mark.parametrize("depth", DEPTHS)
def test_the_sandbox_webhook_refuses_a_deep_signed_body_as_malformed(client, depth):
    order = OrderFactory()
    for body in (nested(depth), deep_object(depth)):
        response = client.post(
            "/payments/webhook/sandbox",
            data=body,
            content_type="application/json",
            headers={SIGNATURE_HEADER: notification_signature(body)},
        )
        assert response.status_code == 400
        assert response.json()["error"] == "malformed_notification"
    _assert_unchanged(order)


@pytest.mark.django_db
def test_the_sandbox_webhook_refuses_an_oversized_body_as_json(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"pad": "x" * 2000}).encode()
    response = client.post(
        "/payments/webhook/sandbox",
        data=body,
        content_type="application/json",
        headers={SIGNATURE_HEADER: notification_signature(body)},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"


@pytest.mark.django_db
@pytest.mark.parametrize("depth", DEPTHS)
def test_the_stripe_webhook_refuses_a_deep_body_signed_or_not(client, fake_stripe, depth):
    order = OrderFactory()
    for body in (nested(depth), deep_object(depth)):
        signed = client.post(
            "/payments/webhook/stripe",
            data=body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=stripe_signature(body, secret=fake_stripe.webhook_secret),
        )
        assert signed.status_code == 400
        assert signed.json()["error"] == "malformed_notification"
        # The SDK's construct_event parsed before it verified: a stranger's
        # unsigned body was enough for the 500.
        forged = client.post(
            "/payments/webhook/stripe", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=00"
        )
        assert forged.status_code == 400
        assert forged.json()["error"] == "invalid_signature"
    _assert_unchanged(order)


@pytest.fixture
def fake_wechat(settings):
    with FakeWechatPay(auto_refund_notify=False) as fake:
        for name, value in fake.settings().items():
            setattr(settings, name, value)
        settings.PAYMENT_PROVIDERS = ["sandbox", "wechatpay"]
        settings.SITE_URL = "https://shop.example"
        yield fake


@pytest.mark.django_db
@pytest.mark.parametrize("depth", DEPTHS)
def test_the_wechatpay_webhook_refuses_a_deep_body_in_wechat_terms(client, fake_wechat, depth):
    """WeChat Pay reads {"code": "FAIL", "message": ...}; the envelope is
    parsed before its signature can be checked, so no key is needed for this."""
    order = OrderFactory()
    for body in (nested(depth), deep_object(depth)):
        response = client.post(
            "/payments/webhook/wechatpay",
            data=body,
            content_type="application/json",
            headers=fake_wechat._signed_headers(body),
        )
        assert response.status_code == 400
        assert response.json() == {"code": "FAIL", "message": "invalid_signature"}
    _assert_unchanged(order)


@pytest.mark.django_db
def test_the_wechatpay_webhook_refuses_an_oversized_body_in_wechat_terms(client, fake_wechat, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"pad": "x" * 2000}).encode()
    response = client.post(
        "/payments/webhook/wechatpay",
        data=body,
        content_type="application/json",
        headers=fake_wechat._signed_headers(body),
    )
    assert response.status_code == 413
    assert response.json() == {"code": "FAIL", "message": "request_too_large"}
