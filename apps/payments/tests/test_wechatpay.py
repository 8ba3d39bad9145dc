"""WeChat Pay API v3: the provider against a local fake of WeChat Pay
(fake_wechatpay.py) with every key made at test time: Native and H5, signed
requests and verified answers, the webhook (signature, decryption, merchant,
amount, age), active query, close, asynchronous refund, and failures that
never reveal a key."""

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils import timezone

from apps.orders.models import Order
from apps.orders.selectors import order_snapshot
from apps.orders.tests.factories import OrderFactory
from apps.payments.exceptions import InvalidSignature, PaymentUnavailable, UnknownProvider, WrongMerchant
from apps.payments.models import PaymentEvent
from apps.payments.providers import provider_get
from apps.payments.providers.wechatpay import WeChatPayError, time_expire
from apps.payments.services import payment_query_apply, payment_start

from .fake_wechatpay import FakeWechatPay

URL = "/payments/webhook/wechatpay"


@pytest.fixture
def fake_wechat(settings):
    """A fake WeChat Pay, and the shop configured for it (only WECHATPAY_API_BASE differs from production)."""
    with FakeWechatPay(auto_refund_notify=False) as fake:
        for name, value in fake.settings().items():
            setattr(settings, name, value)
        settings.PAYMENT_PROVIDERS = ["sandbox", "wechatpay"]
        settings.SITE_URL = "https://shop.example"
        yield fake


def _started(fake, order, device="pc"):
    start = payment_start(
        snapshot=order_snapshot(order), method="wechatpay", token=None, device=device, client_ip="203.0.113.7"
    )
    return start, fake.transactions[order.order_no]


def _post(client, body: bytes, headers: dict):
    return client.post(URL, body, content_type="application/json", headers=headers)


def _unchanged(order):
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert not PaymentEvent.objects.filter(order=order).exists()


def test_time_expire_is_rfc3339_in_china_time():
    assert time_expire(datetime(2026, 1, 2, 2, 34, 56, tzinfo=UTC)) == "2026-01-02T10:34:56+08:00"


@pytest.mark.django_db
def test_pc_gets_a_native_qr_code_from_a_signed_request(fake_wechat):
    deadline = timezone.now() + timedelta(minutes=12)
    order = OrderFactory(amount=Decimal("9.90"), currency="CNY", reserved_until=deadline)
    start, trade = _started(fake_wechat, order)

    assert start.qr_code.startswith("weixin://wxpay/bizpayurl?pr=") and not start.pay_url
    assert (trade.trade_type, trade.total) == ("NATIVE", 990)
    assert trade.notify_url == "https://shop.example/payments/webhook/wechatpay"
    assert trade.time_expire.endswith("+08:00")
    assert datetime.fromisoformat(trade.time_expire) == order.reserved_until.replace(microsecond=0)
    method, url, body = fake_wechat.requests[-1]
    assert (method, url) == ("POST", "/v3/pay/transactions/native")
    assert (body["mchid"], body["appid"], body["out_trade_no"]) == (
        fake_wechat.mchid,
        fake_wechat.appid,
        order.order_no,
    )
    assert not fake_wechat.refused


@pytest.mark.django_db
def test_mobile_gets_an_h5_page_with_the_buyers_ip(fake_wechat):
    order = OrderFactory(currency="CNY")
    start, trade = _started(fake_wechat, order, device="mobile")

    assert start.pay_url.startswith("https://wx.tenpay.com/") and not start.qr_code
    assert (trade.trade_type, trade.payer_client_ip) == ("H5", "203.0.113.7")


@pytest.mark.django_db
def test_a_request_signed_with_another_merchant_key_is_refused_by_wechat(fake_wechat, settings):
    settings.WECHATPAY_PRIVATE_KEY = FakeWechatPay().merchant_private_pem
    with pytest.raises(PaymentUnavailable):
        _started(fake_wechat, OrderFactory(currency="CNY"))
    assert fake_wechat.refused[-1][1] == "signature"


@pytest.mark.django_db
def test_an_answer_not_signed_by_wechat_is_not_believed(fake_wechat, settings):
    order = OrderFactory(currency="CNY")
    _started(fake_wechat, order)
    # The shop trusts another "WeChat Pay public key": the fake's answers fail verification.
    settings.WECHATPAY_PUBLIC_KEY = FakeWechatPay().platform_public_pem
    provider = provider_get(name="wechatpay")
    with pytest.raises(WeChatPayError, match="signature does not verify"):
        provider.payment_query(order_no=order.order_no)
    with pytest.raises(PaymentUnavailable):
        _started(fake_wechat, OrderFactory(currency="CNY"))


@pytest.mark.django_db
def test_another_currency_is_refused_without_calling_wechat(fake_wechat):
    order = OrderFactory(currency="USD")
    with pytest.raises(UnknownProvider):
        _started(fake_wechat, order)
    assert not fake_wechat.requests


# --- the webhook


@pytest.mark.django_db
def test_a_genuine_notification_pays_the_order_once(
    client, fake_wechat, fulfil_enqueued, django_capture_on_commit_callbacks
):
    order = OrderFactory(currency="CNY")
    _start, trade = _started(fake_wechat, order)
    fake_wechat.pay(order.order_no, notify=False)
    body, headers = fake_wechat.notification(fake_wechat.transaction_resource(trade))

    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, body, headers)

    assert response.status_code == 200, response.content
    assert json.loads(response.content)["code"] == "SUCCESS"
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    event = PaymentEvent.objects.get(order=order)
    assert (event.provider, event.event_id, event.kind, event.amount) == (
        "wechatpay",
        trade.transaction_id,
        "paid",
        order.amount,
    )
    fulfil_enqueued.assert_called_once_with(order.id)
    assert _post(client, body, headers).status_code == 200
    assert PaymentEvent.objects.filter(order=order).count() == 1


def _forgeries(fake):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "forged_signature": ({"signing_key": other}, {}, "invalid_signature"),
        "unknown_serial": ({"serial": "PUB_KEY_ID_0000"}, {}, "invalid_signature"),
        "other_apiv3_key": ({"apiv3_key": "k" * 32}, {}, "invalid_signature"),
        "stale": ({"timestamp": int(time.time()) - 3600}, {}, "stale_timestamp"),
        "wrong_amount": ({}, {"amount": {"total": 1, "payer_total": 1, "currency": "CNY"}}, "payment_mismatch"),
        "wrong_mchid": ({}, {"mchid": "1900000000"}, "wrong_merchant"),
        "wrong_appid": ({}, {"appid": "wx0000000000000000"}, "wrong_merchant"),
        "not_paid": ({}, {"trade_state": "NOTPAY"}, "not_a_payment"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case",
    [
        "forged_signature",
        "unknown_serial",
        "other_apiv3_key",
        "stale",
        "wrong_amount",
        "wrong_mchid",
        "wrong_appid",
        "not_paid",
    ],
)
def test_a_refused_notification_answers_fail_and_changes_nothing(client, fake_wechat, fulfil_enqueued, case):
    order = OrderFactory(currency="CNY")
    _start, trade = _started(fake_wechat, order)
    fake_wechat.pay(order.order_no, notify=False)
    forgery, changes, code = _forgeries(fake_wechat)[case]
    body, headers = fake_wechat.notification({**fake_wechat.transaction_resource(trade), **changes}, **forgery)

    response = _post(client, body, headers)

    assert response.status_code == 400
    assert json.loads(response.content) == {"code": "FAIL", "message": code}
    _unchanged(order)
    fulfil_enqueued.assert_not_called()


@pytest.mark.django_db
def test_a_body_changed_after_signing_is_refused(client, fake_wechat):
    order = OrderFactory(currency="CNY")
    _start, trade = _started(fake_wechat, order)
    fake_wechat.pay(order.order_no, notify=False)
    body, headers = fake_wechat.notification(fake_wechat.transaction_resource(trade))
    response = _post(client, body.replace(b'"TRANSACTION.SUCCESS"', b'"TRANSACTION.SUCCESS" '), headers)
    assert response.status_code == 400
    _unchanged(order)


@pytest.mark.django_db
def test_missing_headers_are_refused(client, fake_wechat):
    assert _post(client, b"{}", {}).status_code == 400


@pytest.mark.django_db
def test_another_event_type_is_answered_success_and_ignored(client, fake_wechat):
    body, headers = fake_wechat.notification({"mchid": fake_wechat.mchid}, event_type="REFUND.CLOSED")
    response = _post(client, body, headers)
    assert response.status_code == 200
    assert not PaymentEvent.objects.exists()


@pytest.mark.django_db
def test_the_verifier_reads_a_refund_with_the_payment_it_returns(fake_wechat):
    provider = provider_get(name="wechatpay")
    resource = {
        "mchid": fake_wechat.mchid,
        "out_trade_no": "W1",
        "transaction_id": "4200000001",
        "out_refund_no": "R4200000001",
        "refund_id": "50300000001",
        "refund_status": "SUCCESS",
        "amount": {"total": 990, "refund": 500, "payer_total": 990, "payer_refund": 500},
    }
    body, headers = fake_wechat.notification(resource, event_type="REFUND.SUCCESS")
    refund = provider.notification_verify(body=body, headers=headers, query={})
    assert (refund.kind, refund.event_id, refund.order_no, refund.amount, refund.payment_event_id) == (
        "refunded",
        "50300000001",
        "W1",
        Decimal("5.00"),
        "4200000001",
    )
    body, headers = fake_wechat.notification({**resource, "mchid": "1"}, event_type="REFUND.SUCCESS")
    with pytest.raises(WrongMerchant):
        provider.notification_verify(body=body, headers=headers, query={})
    with pytest.raises(InvalidSignature):
        provider.notification_verify(body=body + b" ", headers=headers, query={})


# --- query, close, refund


@pytest.mark.django_db
def test_an_active_query_finds_a_payment_whose_notification_was_lost(fake_wechat, fulfil_enqueued):
    order = OrderFactory(currency="CNY")
    assert payment_query_apply(provider_name="wechatpay", order_no=order.order_no) is None  # unknown at WeChat
    _start, trade = _started(fake_wechat, order)
    assert payment_query_apply(provider_name="wechatpay", order_no=order.order_no) is None  # not paid yet
    fake_wechat.pay(order.order_no, notify=False)

    paid = payment_query_apply(provider_name="wechatpay", order_no=order.order_no)

    assert paid.status == Order.Status.PAID
    assert PaymentEvent.objects.get(order=order).event_id == trade.transaction_id


@pytest.mark.django_db
def test_close_closes_an_open_transaction_and_tolerates_paid_and_unknown_ones(fake_wechat):
    provider = provider_get(name="wechatpay")
    provider.payment_close(order_no="NEVER-OPENED")  # nothing asked of WeChat
    assert not fake_wechat.requests

    order = OrderFactory(currency="CNY")
    _start, trade = _started(fake_wechat, order)
    provider.payment_close(order_no=order.order_no)
    assert trade.trade_state == "CLOSED"
    assert fake_wechat.requests[-1][:2] == ("POST", f"/v3/pay/transactions/out-trade-no/{order.order_no}/close")

    paid = OrderFactory(currency="CNY")
    _started(fake_wechat, paid)
    fake_wechat.pay(paid.order_no, notify=False)
    provider.payment_close(order_no=paid.order_no)  # ORDERPAID: not an error
    assert fake_wechat.transactions[paid.order_no].trade_state == "SUCCESS"


@pytest.mark.django_db
def test_a_refund_is_asked_once_and_confirmed_by_notification(fake_wechat):
    order = OrderFactory(currency="CNY", amount=Decimal("9.90"))
    _start, trade = _started(fake_wechat, order)
    fake_wechat.pay(order.order_no, notify=False)
    provider = provider_get(name="wechatpay")

    for _ in range(2):
        assert (
            provider.refund_start(
                order_no=order.order_no, event_id=trade.transaction_id, amount=Decimal("9.90"), currency="CNY"
            )
            is None
        )

    assert len(trade.refunds) == 1
    refund = trade.refunds[0]
    assert refund["out_refund_no"] == f"R{trade.transaction_id}"
    assert refund["amount"]["refund"] == 990
    assert refund["notify_url"] == "https://shop.example/payments/webhook/wechatpay"


@pytest.mark.django_db
def test_failures_never_reveal_a_key(fake_wechat, settings, caplog):
    secrets_ = [fake_wechat.apiv3_key, fake_wechat.merchant_private_pem.splitlines()[1]]
    provider = provider_get(name="wechatpay")
    assert not any(s in repr(provider) for s in secrets_)
    settings.WECHATPAY_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----"
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(PaymentUnavailable) as raised:
            _started(fake_wechat, OrderFactory(currency="CNY"))
        settings.WECHATPAY_PRIVATE_KEY = fake_wechat.merchant_private_pem
        settings.WECHATPAY_API_BASE = "http://127.0.0.1:9"  # nothing listens
        with pytest.raises(PaymentUnavailable):
            _started(fake_wechat, OrderFactory(currency="CNY"))
    text = caplog.text + repr(raised.value) + repr(raised.value.__cause__)
    for secret in [*secrets_, fake_wechat.merchant_private_pem.splitlines()[2]]:
        assert secret not in text
    assert "payment provider wechatpay" in caplog.text
