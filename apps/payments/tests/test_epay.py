"""易支付 (epay): the protocol (signature, notification checks, answers) and
the provider against a local fake epay gateway (fake_epay.py) with a key made
at test time: page jump, the webhook by GET, active query, synchronous refund,
and failures that never reveal the merchant key."""

import hashlib
import logging
import traceback
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.utils import timezone

from apps.orders.models import Order
from apps.orders.selectors import order_snapshot
from apps.orders.services.payment import order_mark_paid, order_refund_start
from apps.orders.tests.factories import OrderFactory
from apps.orders.tests.support import checkout, product_with_keys
from apps.payments.exceptions import (
    InvalidSignature,
    MalformedNotification,
    NotPaidNotification,
    PaymentUnavailable,
    UnknownProvider,
    WrongMerchant,
)
from apps.payments.models import PaymentEvent
from apps.payments.providers import provider_get
from apps.payments.providers.epay import EpayError, epay_sign
from apps.payments.refunds import payment_refund_request
from apps.payments.services import payment_query_apply, payment_start

from .fake_epay import FakeEpay
from .silent_server import SilentServer

URL = "/payments/webhook/epay"


@pytest.fixture
def fake_epay(settings):
    """A fake epay gateway, and the shop configured for it (only the gateway URL differs from production)."""
    with FakeEpay() as fake:
        settings.EPAY_GATEWAY_URL = fake.url
        settings.EPAY_PID = fake.pid
        settings.EPAY_KEY = fake.key
        settings.EPAY_TIMEOUT_SECONDS = 5
        settings.PAYMENT_PROVIDERS = ["sandbox", "epay"]
        settings.SITE_URL = "https://shop.example"
        yield fake


def _unchanged(order):
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert order.paid_at is None
    assert not PaymentEvent.objects.filter(order=order).exists()


def _started(fake, order, method="epay.alipay"):
    """The buyer starts paying the order with epay and opens the gateway's page: its trade."""
    start = payment_start(snapshot=order_snapshot(order), method=method, token=None, device="pc", client_ip="")
    status, _ = fake.open(start.pay_url)
    assert status == 200
    return fake.trade_for(order.order_no)


# --- the signature


def test_signature_matches_a_published_example_of_the_same_scheme():
    # The example of the identical scheme (sorted k=v joined by &, merchant key
    # appended, md5 lowercase) published with the defupay API docs
    # (kancloud.cn/q86849180/defupay/921626).
    params = {"uid": "1000", "timestamp": "1548047628"}
    assert epay_sign(params, "58b31d465652be856d7ed80977aa4ce4") == "15540d3398e5ed2a37533e3fc032e1a0"


def test_signature_leaves_out_sign_sign_type_and_empty_values_and_appends_the_key():
    params = {
        "pid": "1001",
        "type": "alipay",
        "out_trade_no": "A1",
        "money": "9.90",
        "name": "",
        "sign": "x",
        "sign_type": "MD5",
    }
    by_hand = "money=9.90&out_trade_no=A1&pid=1001&type=alipayKEY"
    assert hashlib.md5(by_hand.encode()).hexdigest() == "2eecc6153a6343b6f059d75939a48efb"
    assert epay_sign(params, "KEY") == "2eecc6153a6343b6f059d75939a48efb"


def test_signature_sorts_names_by_ascii():
    # "B" (0x42) < "a_b" ('_' is 0x5F) < "ab" < "b"
    assert (
        epay_sign({"b": "1", "B": "2", "a_b": "3", "ab": "4"}, "k") == hashlib.md5(b"B=2&a_b=3&ab=4&b=1k").hexdigest()
    )


def test_signature_of_chinese_text_is_over_utf8():
    params = {"name": "月卡", "money": "1.00"}
    assert epay_sign(params, "k") == hashlib.md5("money=1.00&name=月卡k".encode()).hexdigest()


# --- verifying a notification (no database)


def _trade(fake, money="9.90"):
    from .fake_epay import Trade

    return Trade("20260000000001", "261129-1-ABCDEFGHJK", "alipay", "月卡", money, "", "")


def _verify(query):
    return provider_get(name="epay").notification_verify(body=b"", headers={}, query=query)


def test_a_genuine_notification_reads_as_a_payment(fake_epay):
    notification = _verify(fake_epay.notification(_trade(fake_epay)))
    assert (notification.event_id, notification.order_no, notification.amount, notification.currency) == (
        "20260000000001",
        "261129-1-ABCDEFGHJK",
        Decimal("9.90"),
        "CNY",
    )
    assert notification.kind == "paid"
    # epay sends no timestamp: dated on receipt.
    assert abs(timezone.now() - notification.timestamp) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"sign": "0" * 32}, InvalidSignature),
        ({"sign": "not-hex"}, InvalidSignature),
        ({"pid": "9999"}, WrongMerchant),
        ({"trade_status": "TRADE_CLOSED"}, NotPaidNotification),
        ({"trade_status": "WAIT_BUYER_PAY"}, NotPaidNotification),
        ({"trade_no": ""}, MalformedNotification),
        ({"money": "lots"}, MalformedNotification),
        ({"money": "-9.90"}, MalformedNotification),
        ({"money": "9.901"}, MalformedNotification),
    ],
)
def test_a_bad_notification_is_refused(fake_epay, changes, error):
    with pytest.raises(error):
        _verify(fake_epay.notification(_trade(fake_epay), **changes))


def test_a_notification_tampered_after_signing_is_refused(fake_epay):
    query = fake_epay.notification(_trade(fake_epay))
    with pytest.raises(InvalidSignature):
        _verify({**query, "money": "0.01"})
    with pytest.raises(InvalidSignature):
        _verify({**query, "sign_type": "RSA"})
    with pytest.raises(InvalidSignature):
        _verify({name: value for name, value in query.items() if name != "sign"})


def test_a_deployment_that_posts_the_notification_as_a_form_is_read_too(fake_epay):
    query = fake_epay.notification(_trade(fake_epay))
    body = urlencode(query).encode()
    provider = provider_get(name="epay")
    assert provider.notification_verify(body=body, headers={}, query={}).event_id == "20260000000001"
    with pytest.raises(InvalidSignature):
        provider.notification_verify(body=body.replace(b"money=9.90", b"money=0.01"), headers={}, query={})


def test_a_missing_field_is_refused_even_when_signed(fake_epay):
    query = fake_epay.notification(_trade(fake_epay))
    del query["out_trade_no"]
    query["sign"] = epay_sign(query, fake_epay.key)
    with pytest.raises(MalformedNotification):
        _verify(query)


def test_without_a_configured_key_nothing_verifies(fake_epay, settings):
    # md5 with an empty key is computable by anyone.
    settings.EPAY_KEY = ""
    query = fake_epay.notification(_trade(fake_epay))
    query["sign"] = epay_sign(query, "")
    with pytest.raises(InvalidSignature):
        _verify(query)


def test_the_provider_offers_three_cny_channels_and_notifies_by_get(fake_epay):
    provider = provider_get(name="epay")
    assert provider.methods() == ["epay.alipay", "epay.wxpay", "epay.qqpay"]
    assert provider.takes_currency("CNY") and not provider.takes_currency("USD")
    assert provider.notifies_by_get
    assert provider.notification_answer(accepted=True).body == b"success"
    assert provider.notification_answer(accepted=False, detail="invalid_signature").body != b"success"
    assert fake_epay.key not in repr(provider)


# --- the page jump


@pytest.mark.django_db
def test_payment_start_jumps_to_the_gateway_with_a_signed_request_it_accepts(fake_epay):
    order = OrderFactory(quantity=2, amount=Decimal("19.80"))
    start = payment_start(snapshot=order_snapshot(order), method="epay.wxpay", token="t0k", device="pc", client_ip="")

    assert start.pay_url.startswith(f"{fake_epay.url}/submit.php?")
    params = dict(parse_qsl(urlsplit(start.pay_url).query))
    assert "t0k" not in start.pay_url  # the order token never goes to another site
    assert fake_epay.key not in start.pay_url
    assert (params["type"], params["out_trade_no"], params["money"]) == ("wxpay", order.order_no, "19.80")
    assert params["notify_url"] == "https://shop.example/payments/webhook/epay"
    assert params["return_url"] == f"https://shop.example/orders/{order.order_no}"
    assert fake_epay.open(start.pay_url)[0] == 200
    assert fake_epay.trade_for(order.order_no).money == "19.80"


@pytest.mark.django_db
def test_the_gateway_refuses_a_pay_url_whose_amount_was_changed(fake_epay):
    order = OrderFactory()
    start = payment_start(snapshot=order_snapshot(order), method="epay.alipay", token=None, device="pc", client_ip="")
    params = dict(parse_qsl(urlsplit(start.pay_url).query))
    tampered = f"{fake_epay.url}/submit.php?{urlencode({**params, 'money': '0.01'})}"
    assert fake_epay.open(tampered)[0] == 400
    assert not fake_epay.trades


@pytest.mark.django_db
def test_an_unknown_channel_is_refused(fake_epay):
    order = OrderFactory()
    with pytest.raises(UnknownProvider):
        payment_start(snapshot=order_snapshot(order), method="epay.unionpay", token=None, device="pc", client_ip="")


@pytest.mark.django_db
def test_another_currency_is_refused_without_calling_the_gateway(fake_epay):
    order = OrderFactory()
    snapshot = {**order_snapshot(order), "currency": "USD"}
    with pytest.raises(UnknownProvider):
        payment_start(snapshot=snapshot, method="epay.alipay", token=None, device="pc", client_ip="")
    assert not fake_epay.requests


@pytest.mark.django_db
def test_a_notification_for_an_order_still_being_placed_asks_epay_to_retry(client, fake_epay):
    product = product_with_keys(keys=1)
    placed = checkout(product)  # a reservation in Redis, not yet an order in MariaDB
    trade = _started_without_shop(fake_epay, Order(order_no=placed.order_no, amount=product.price))

    response = client.get(URL, fake_epay.notification(trade))

    assert response.status_code == 503
    assert response.content == b"fail: order_pending"  # not "success": epay sends it again
    assert not PaymentEvent.objects.exists()


# --- the webhook (GET, answered "success")


@pytest.mark.django_db
def test_the_gateways_notification_by_get_pays_the_order(
    client, fake_epay, fulfil_enqueued, django_capture_on_commit_callbacks
):
    order = OrderFactory()
    trade = _started(fake_epay, order)
    fake_epay.pay(trade.trade_no, notify=False)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(URL, fake_epay.notification(trade))

    assert response.status_code == 200
    assert response.content == b"success"
    assert response["Content-Type"].startswith("text/plain")
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    event = PaymentEvent.objects.get(order=order)
    assert (event.provider, event.event_id, event.kind, event.amount) == ("epay", trade.trade_no, "paid", order.amount)
    fulfil_enqueued.assert_called_once_with(order.id)

    again = client.get(URL, fake_epay.notification(trade))
    assert (again.status_code, again.content) == (200, b"success")
    assert PaymentEvent.objects.filter(order=order).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"sign": "f" * 32}, "invalid_signature"),
        ({"money": "0.01"}, "payment_mismatch"),
        ({"pid": "2002"}, "wrong_merchant"),
        ({"trade_status": "TRADE_CLOSED"}, "not_a_payment"),
    ],
)
def test_a_refused_notification_answers_fail_and_changes_nothing(client, fake_epay, fulfil_enqueued, changes, code):
    order = OrderFactory()
    trade = _started(fake_epay, order)

    response = client.get(URL, fake_epay.notification(trade, **changes))

    assert response.status_code == 400
    assert response.content == f"fail: {code}".encode()
    _unchanged(order)
    fulfil_enqueued.assert_not_called()


@pytest.mark.django_db
def test_epay_is_refused_while_not_enabled(client, fake_epay, settings):
    settings.PAYMENT_PROVIDERS = ["sandbox"]
    order = OrderFactory()
    trade = _started_without_shop(fake_epay, order)
    assert client.get(URL, fake_epay.notification(trade)).status_code == 405
    _unchanged(order)


def _started_without_shop(fake, order):
    from .fake_epay import Trade

    trade = Trade("20269999999999", order.order_no, "alipay", "x", str(order.amount), "", "")
    fake.trades[trade.trade_no] = trade
    return trade


# --- active query


@pytest.mark.django_db
def test_an_active_query_finds_a_payment_whose_notification_was_lost(
    client, fake_epay, fulfil_enqueued, django_capture_on_commit_callbacks
):
    order = OrderFactory()
    assert payment_query_apply(provider_name="epay", order_no=order.order_no) is None  # never opened at epay
    trade = _started(fake_epay, order)
    assert payment_query_apply(provider_name="epay", order_no=order.order_no) is None  # opened, unpaid
    _unchanged(order)

    fake_epay.pay(trade.trade_no, notify=False)
    with django_capture_on_commit_callbacks(execute=True):
        paid = payment_query_apply(provider_name="epay", order_no=order.order_no)

    assert paid.status == Order.Status.PAID
    event = PaymentEvent.objects.get(order=order)
    assert (event.provider, event.event_id) == ("epay", trade.trade_no)
    fulfil_enqueued.assert_called_once_with(order.id)
    # The notification arriving after all, and a second query, act no more.
    assert client.get(URL, fake_epay.notification(trade)).content == b"success"
    payment_query_apply(provider_name="epay", order_no=order.order_no)
    assert PaymentEvent.objects.filter(order=order).count() == 1
    assert fulfil_enqueued.call_count == 1


# --- refunds (synchronous: epay sends no refund notification)


@pytest.mark.django_db
def test_a_refund_goes_through_the_gateway_and_is_recorded_at_once(fake_epay, fulfil_enqueued):
    order = OrderFactory()
    trade = _started(fake_epay, order)
    fake_epay.pay(trade.trade_no, notify=False)
    order_mark_paid(
        order_no=order.order_no, provider="epay", event_id=trade.trade_no, amount=order.amount, currency="CNY"
    )
    order_refund_start(order_ids=[order.id], reason="operator refund")

    assert payment_refund_request(order_id=order.id) is True

    assert fake_epay.trades[trade.trade_no].status == 2
    assert fake_epay.trades[trade.trade_no].refunds == ["9.90"]
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    refund = PaymentEvent.objects.get(order=order, kind="refunded")
    assert (refund.provider, refund.event_id) == ("epay", f"refund-{trade.trade_no}")
    # Asked again (a retried task): nothing more at the gateway or here.
    assert payment_refund_request(order_id=order.id) is False
    assert fake_epay.trades[trade.trade_no].refunds == ["9.90"]


@pytest.mark.django_db
def test_a_refund_whose_answer_was_lost_is_not_made_twice(fake_epay):
    order = OrderFactory()
    trade = _started(fake_epay, order)
    fake_epay.pay(trade.trade_no, notify=False)
    provider = provider_get(name="epay")

    first = provider.refund_start(order_no=order.order_no, event_id=trade.trade_no, amount=order.amount, currency="CNY")
    again = provider.refund_start(order_no=order.order_no, event_id=trade.trade_no, amount=order.amount, currency="CNY")

    assert first.event_id == again.event_id == f"refund-{trade.trade_no}"
    assert first.kind == "refunded" and first.amount == order.amount
    assert fake_epay.trades[trade.trade_no].refunds == ["9.90"]


@pytest.mark.django_db
def test_a_refund_of_an_unknown_payment_fails_and_the_order_stays(fake_epay, fulfil_enqueued):
    order = OrderFactory()
    order_mark_paid(order_no=order.order_no, provider="epay", event_id="2026404", amount=order.amount, currency="CNY")
    order_refund_start(order_ids=[order.id], reason="operator refund")
    with pytest.raises(PaymentUnavailable):
        payment_refund_request(order_id=order.id)
    order.refresh_from_db()
    assert order.status == Order.Status.REFUND_PENDING


# --- failures never reveal the merchant key


def _all_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


@pytest.mark.django_db
def test_a_gateway_that_hangs_fails_without_revealing_the_key(fake_epay, settings, caplog):
    settings.EPAY_TIMEOUT_SECONDS = 0.3
    with SilentServer() as silent:
        settings.EPAY_GATEWAY_URL = silent.url
        provider = provider_get(name="epay")
        with pytest.raises(EpayError) as raw:
            provider.payment_query(order_no="261129-1-ABCDEFGHJK")
        with caplog.at_level(logging.DEBUG), pytest.raises(PaymentUnavailable) as wrapped:
            payment_query_apply(provider_name="epay", order_no="261129-1-ABCDEFGHJK")
    assert "act=order" in str(raw.value)
    for text in (_all_text(raw.value), _all_text(wrapped.value), caplog.text):
        assert fake_epay.key not in text


@pytest.mark.django_db
def test_gateway_refusals_and_errors_do_not_reveal_the_key(fake_epay, settings, caplog):
    key = fake_epay.key
    order = OrderFactory()
    trade = _started(fake_epay, order)
    fake_epay.pay(trade.trade_no, notify=False)
    with caplog.at_level(logging.DEBUG):
        # The gateway answers 404 (a wrong path).
        settings.EPAY_GATEWAY_URL = fake_epay.url + "/wrong"
        with pytest.raises(EpayError) as not_found:
            provider_get(name="epay").payment_query(order_no=order.order_no)
        # The gateway refuses a key it does not know (a typo in EPAY_KEY).
        settings.EPAY_GATEWAY_URL = fake_epay.url
        settings.EPAY_KEY = key[:-1] + "x"
        assert provider_get(name="epay").payment_query(order_no=order.order_no) is None
        with pytest.raises(EpayError) as refused:
            provider_get(name="epay").refund_start(
                order_no=order.order_no, event_id=trade.trade_no, amount=order.amount, currency="CNY"
            )
    assert "HTTP 404" in str(not_found.value)
    assert "KEY" in caplog.text  # epay's own message is logged (校验失败) ...
    for text in (_all_text(not_found.value), _all_text(refused.value), caplog.text):
        assert key not in text and settings.EPAY_KEY not in text  # ... never the key
