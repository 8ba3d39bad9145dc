"""The Alipay provider against a local fake Alipay gateway (fake_alipay.py):
the requests it signs, the answers and notifications it verifies, and what it
refuses. End to end with gunicorn and Celery: test_alipay_live.py."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from apps.payments.exceptions import InvalidSignature, MalformedNotification, NotificationIgnored, WrongMerchant
from apps.payments.providers import provider_get
from apps.payments.providers.alipay import AlipayError, AlipayProvider
from apps.payments.providers.base import PaymentRequest

from .fake_alipay import FakeAlipay, rsa_pair


@pytest.fixture(scope="module")
def gateway():
    with FakeAlipay() as fake:
        yield fake


@pytest.fixture
def alipay(settings, gateway) -> AlipayProvider:
    settings.PAYMENT_PROVIDERS = ["sandbox", "alipay"]
    settings.ALIPAY_APP_ID = gateway.app_id
    settings.ALIPAY_APP_PRIVATE_KEY = gateway.app_private_key
    settings.ALIPAY_PUBLIC_KEY = gateway.alipay_public_key
    settings.ALIPAY_GATEWAY_URL = gateway.url
    settings.ALIPAY_QR = False
    return provider_get(name="alipay")


DEADLINE = datetime(2026, 3, 1, 4, 15, 0, tzinfo=UTC)  # 12:15:00 in Beijing


def _request(order_no: str, *, device="pc", amount="9.90", currency="CNY") -> PaymentRequest:
    return PaymentRequest(
        order_no=order_no,
        amount=Decimal(amount),
        currency=currency,
        subject="Game card 100",
        method="alipay",
        deadline=DEADLINE,
        device=device,
        client_ip="127.0.0.1",
        return_url=f"https://shop.example/orders/{order_no}",
        notify_url="https://shop.example/payments/webhook/alipay",
    )


def _body(params: dict) -> bytes:
    return urlencode(params).encode()


def _verify(alipay, params: dict):
    return alipay.notification_verify(body=_body(params), headers={}, query={})


def test_registered_as_one_cny_method(alipay):
    assert alipay.methods() == ["alipay"]
    assert alipay.takes_currency("CNY") and not alipay.takes_currency("USD")


def test_a_computer_goes_to_page_pay_signed_and_expiring_at_the_deadline(alipay, gateway):
    start = alipay.payment_start(request=_request("A1001"))
    assert start.pay_url.startswith(gateway.url + "?") and not start.qr_code
    query = dict(parse_qsl(urlsplit(start.pay_url).query))
    assert query["method"] == "alipay.trade.page.pay" and query["sign_type"] == "RSA2"
    assert query["notify_url"] == "https://shop.example/payments/webhook/alipay"
    assert query["return_url"] == "https://shop.example/orders/A1001"
    assert json.loads(query["biz_content"]) == {
        "out_trade_no": "A1001",
        "total_amount": "9.90",
        "subject": "Game card 100",
        "time_expire": "2026-03-01 12:15:00",
        "product_code": "FAST_INSTANT_TRADE_PAY",
    }
    # The request's timestamp is Beijing time, whatever the server's zone.
    sent = datetime.strptime(query["timestamp"], "%Y-%m-%d %H:%M:%S")
    beijing_now = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=8)
    assert abs((sent - beijing_now).total_seconds()) < 60
    # The gateway checks the app's RSA2 signature and opens the trade.
    assert gateway.open(start.pay_url)[0] == 200
    assert gateway.trades["A1001"].method == "alipay.trade.page.pay"


def test_a_phone_goes_to_wap_pay(alipay, gateway):
    start = alipay.payment_start(request=_request("A1002", device="mobile"))
    assert gateway.open(start.pay_url)[0] == 200
    trade = gateway.trades["A1002"]
    assert trade.method == "alipay.trade.wap.pay"
    assert trade.time_expire == "2026-03-01 12:15:00"


def test_with_alipay_qr_a_computer_gets_a_qr_code_from_precreate(alipay, gateway, settings):
    settings.ALIPAY_QR = True
    start = alipay.payment_start(request=_request("A1003"))
    trade = gateway.trades["A1003"]
    assert start.qr_code == f"https://qr.alipay.com/fake{trade.trade_no}" and not start.pay_url
    assert (trade.method, trade.notify_url) == (
        "alipay.trade.precreate",
        "https://shop.example/payments/webhook/alipay",
    )
    # Phones still go to WAP pay.
    assert alipay.payment_start(request=_request("A1004", device="mobile")).pay_url


def test_a_request_signed_with_another_key_is_refused_by_the_gateway(alipay, gateway, settings):
    settings.ALIPAY_APP_PRIVATE_KEY = rsa_pair()[1]
    settings.ALIPAY_QR = True
    with pytest.raises(AlipayError) as raised:
        alipay.payment_start(request=_request("A1005"))
    assert "A1005" not in gateway.trades
    assert "PRIVATE" not in str(raised.value) and gateway.app_private_key not in repr(raised.value)


def test_an_answer_not_signed_by_alipay_is_refused(alipay, gateway, settings):
    settings.ALIPAY_PUBLIC_KEY = rsa_pair()[2]  # the shop trusts another key than the one answering
    with pytest.raises(AlipayError, match="signature"):
        alipay.payment_query(order_no="A1001")


def test_other_currencies_are_not_offered(alipay):
    with pytest.raises(Exception) as raised:
        alipay.payment_start(request=_request("A1006", currency="USD"))
    assert getattr(raised.value, "code", None) == "unknown_provider"


# --- notifications


def _paid_trade(alipay, gateway, order_no):
    alipay.payment_start(request=_request(order_no))
    gateway.open(alipay.payment_start(request=_request(order_no)).pay_url)
    gateway.pay(order_no, notify=False)
    return gateway.trades[order_no]


def test_a_paid_notification_is_read(alipay, gateway):
    trade = _paid_trade(alipay, gateway, "N2001")
    params = gateway.notification(trade, notify_time="2026-03-01 12:00:05")
    notification = _verify(alipay, params)
    assert (notification.event_id, notification.order_no, notification.kind) == (trade.trade_no, "N2001", "paid")
    assert (notification.amount, notification.currency) == (Decimal("9.90"), "CNY")
    assert notification.timestamp == datetime(2026, 3, 1, 4, 0, 5, tzinfo=UTC)
    assert _verify(alipay, gateway.notification(trade, trade_status="TRADE_FINISHED")).kind == "paid"


@pytest.mark.parametrize("status", ["WAIT_BUYER_PAY", "TRADE_CLOSED"])
def test_a_genuine_notification_of_no_payment_is_acknowledged_and_ignored(alipay, gateway, status):
    trade = _paid_trade(alipay, gateway, f"N2002{status[:2]}")
    with pytest.raises(NotificationIgnored):
        _verify(alipay, gateway.notification(trade, trade_status=status))
    assert alipay.notification_answer(accepted=True).body == b"success"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"sign": "A" * 344}, InvalidSignature),
        ({"sign": "not base64!"}, InvalidSignature),
        ({"sign": ""}, InvalidSignature),
        ({"sign_type": "RSA"}, InvalidSignature),
        ({"app_id": "2021000999999999"}, WrongMerchant),
        ({"trade_no": None}, MalformedNotification),
        ({"total_amount": "9.999"}, MalformedNotification),
        ({"notify_time": "yesterday"}, MalformedNotification),
    ],
)
def test_forged_or_malformed_notifications_are_refused(alipay, gateway, changes, error):
    trade = _paid_trade(alipay, gateway, "N2003")
    sign_type = changes.pop("sign_type", None)
    params = gateway.notification(trade, **changes)
    if sign_type:
        params["sign_type"] = sign_type
    with pytest.raises(error):
        _verify(alipay, params)
    assert alipay.notification_answer(accepted=False, detail=error.code).body == f"fail: {error.code}".encode()


def test_a_field_changed_after_signing_breaks_the_signature(alipay, gateway):
    trade = _paid_trade(alipay, gateway, "N2004")
    params = gateway.notification(trade)
    params["total_amount"] = "0.01"
    with pytest.raises(InvalidSignature):
        _verify(alipay, params)


def test_a_notification_signed_by_another_key_is_refused(alipay, gateway):
    trade = _paid_trade(alipay, gateway, "N2005")
    other = FakeAlipay(app_id=gateway.app_id)  # the same app id, another "Alipay" key
    with pytest.raises(InvalidSignature):
        _verify(alipay, other.notification(trade))


# --- query, close, refund


def test_query_an_unknown_an_open_and_a_paid_trade(alipay, gateway):
    assert alipay.payment_query(order_no="Q3001") is None  # ACQ.TRADE_NOT_EXIST
    gateway.open(alipay.payment_start(request=_request("Q3001")).pay_url)
    assert alipay.payment_query(order_no="Q3001") is None
    gateway.pay("Q3001", notify=False)
    paid = alipay.payment_query(order_no="Q3001")
    assert (paid.event_id, paid.amount, paid.kind) == (gateway.trades["Q3001"].trade_no, Decimal("9.90"), "paid")


def test_close_an_open_trade_and_tolerate_an_unknown_or_paid_one(alipay, gateway):
    alipay.payment_close(order_no="C4001")  # never created at Alipay: nothing to close
    gateway.open(alipay.payment_start(request=_request("C4001")).pay_url)
    alipay.payment_close(order_no="C4001")
    assert gateway.trades["C4001"].status == "TRADE_CLOSED"
    _paid_trade(alipay, gateway, "C4002")
    alipay.payment_close(order_no="C4002")  # paid meanwhile: not closed, not an error
    assert gateway.trades["C4002"].status == "TRADE_SUCCESS"


def test_a_refund_asked_twice_refunds_once_and_its_notification_has_the_same_event_id(alipay, gateway):
    trade = _paid_trade(alipay, gateway, "R5001")
    first = alipay.refund_start(order_no="R5001", event_id=trade.trade_no, amount=Decimal("9.90"), currency="CNY")
    again = alipay.refund_start(order_no="R5001", event_id=trade.trade_no, amount=Decimal("9.90"), currency="CNY")
    assert trade.refunds == {f"refund-{trade.trade_no}": "9.90"}
    assert first.event_id == again.event_id == f"refund-{trade.trade_no}"
    assert (first.kind, first.amount, first.payment_event_id) == ("refunded", Decimal("9.90"), trade.trade_no)
    # Alipay's notification of the refund (TRADE_CLOSED, out_biz_no) reads as the same refund.
    notified = _verify(alipay, gateway.refund_notification(trade, f"refund-{trade.trade_no}"))
    assert (notified.event_id, notified.kind, notified.amount) == (first.event_id, "refunded", Decimal("9.90"))
    assert notified.payment_event_id == trade.trade_no


def test_a_refund_alipay_refuses_raises(alipay, gateway):
    gateway.open(alipay.payment_start(request=_request("R5002")).pay_url)  # never paid
    trade = gateway.trades["R5002"]
    with pytest.raises(AlipayError, match="ACQ.TRADE_STATUS_ERROR"):
        alipay.refund_start(order_no="R5002", event_id=trade.trade_no, amount=Decimal("9.90"), currency="CNY")


def test_a_gateway_that_is_down_is_an_alipay_error_without_url_or_key(alipay, settings):
    settings.ALIPAY_GATEWAY_URL = "http://127.0.0.1:9/gateway.do"
    with pytest.raises(AlipayError) as raised:
        alipay.__class__().payment_query(order_no="D6001")
    assert str(raised.value) == "alipay.trade.query: URLError"


def test_the_keys_stay_out_of_reprs(alipay, gateway):
    text = repr(alipay) + repr(alipay._client())
    assert "PRIVATE" not in text and gateway.app_private_key not in text
