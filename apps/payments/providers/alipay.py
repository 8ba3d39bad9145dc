"""Alipay (支付宝开放平台), through python-alipay-sdk (module `alipay`).

The SDK builds and RSA2-signs the requests (SHA256withRSA over the parameters
sorted by name, `sign` left out) with the app's private key, and verifies
Alipay's signed answers and notifications with Alipay's public key. Its HTTP
is replaced here (`_Client._call`): a POST to ALIPAY_GATEWAY_URL without a
proxy from the environment and with a bounded timeout, whose errors name the
call and the kind of failure only.

- Pay, by device: a phone (`mobile`) gets WAP pay (`alipay.trade.wap.pay`), a
  computer (`pc`) page pay (`alipay.trade.page.pay`): the buyer is sent to the
  gateway with the signed query. With ALIPAY_QR on, a computer gets a QR code
  instead (`alipay.trade.precreate`, 当面付), drawn on the order page for the
  buyer to scan with the Alipay app. `time_expire` is the order's deadline
  (Beijing time), so Alipay stops taking the payment when the shop does.
- Notification: a form POST signed RSA2 (every field but `sign` and
  `sign_type`). `TRADE_SUCCESS` / `TRADE_FINISHED` is a payment (event id:
  Alipay's `trade_no`, which an active query sees too); a notification that
  carries `out_biz_no` reports a refund (see refund_start); any other status
  (WAIT_BUYER_PAY, TRADE_CLOSED of an unpaid trade) is acknowledged and
  ignored. `app_id` must be ours (else WrongMerchant). Dated by its
  `notify_time` (Beijing time; each retry is sent afresh). Alipay wants the
  plain body `success`; anything else and it retries (for about 25 hours).
- Query: `alipay.trade.query` by out_trade_no; a trade Alipay does not know
  (the buyer never opened the page: ACQ.TRADE_NOT_EXIST) is unpaid.
- Refund: `alipay.trade.refund` with `out_request_no` = "refund-<trade_no>":
  asked twice, Alipay refunds once. It answers synchronously, so refund_start
  returns the `refunded` notification with that same id as its event id.
  Alipay may also notify the refund (a TRADE_SUCCESS / TRADE_CLOSED
  notification with `out_biz_no` = our out_request_no and `refund_fee`): it
  is read as a refund with the same event id, so whichever comes second is a
  repeat and changes nothing.
- Close: `alipay.trade.close`; a trade Alipay never created is nothing to close.
- Currency: CNY only.

The app's private key signs and never leaves this process; nothing here logs
or raises a URL, a body or an SDK exception's text (the SDK puts the whole
answer in its exception).
"""

import logging
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from django.conf import settings
from django.utils import timezone

from ..exceptions import InvalidSignature, MalformedNotification, NotificationIgnored, UnknownProvider, WrongMerchant
from ..models import PaymentEvent
from .base import PaymentNotification, PaymentProvider, PaymentRequest, PaymentStart, WebhookAnswer

logger = logging.getLogger(__name__)

ALIPAY = "alipay"
BEIJING = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
SUCCESS = "10000"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
_NOTIFICATION_FIELDS = ("app_id", "trade_no", "out_trade_no", "trade_status", "notify_time")

# The gateway is called directly, never through a proxy set in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AlipayError(Exception):
    """A call to Alipay failed or was refused. The text names the call and
    Alipay's codes, never a URL, body or key."""


def beijing(moment: datetime) -> str:
    """A moment as Alipay writes it: Beijing time, no zone."""
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


def beijing_parse(text: str) -> datetime:
    """Alipay's "2024-01-02 15:04:05" (Beijing time) as an aware datetime.
    Raises ValueError."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=BEIJING)


def out_request_no(event_id: str) -> str:
    """The refund request number of a payment: the same for every attempt to
    refund it, so Alipay refunds it once (≤ 64 characters)."""
    return f"refund-{event_id}"[:64]


def _money(amount: Decimal) -> str:
    return str(Decimal(amount).quantize(Decimal("0.01")))


class _Client(AliPay):
    """The SDK with the shop's gateway, clock and HTTP."""

    def __init__(self, *, gateway: str, timeout: float, **kwargs):
        super().__init__(**kwargs)
        self._gateway = gateway
        self._timeout = timeout

    def __repr__(self):  # keys stay out of any repr
        return f"AlipayClient(app_id={self.appid!r}, gateway={self._gateway!r})"

    def build_body(self, method, biz_content=None, **kwargs):
        data = super().build_body(method, biz_content, **kwargs)
        # The SDK stamps the server's local time; Alipay reads Beijing time.
        data["timestamp"] = beijing(timezone.now())
        return data

    def verified_sync_response(self, data, response_type):
        method = data.get("method", "?")
        body = self.sign_data(data).encode("utf-8")
        request = urllib.request.Request(f"{self._gateway}?charset=utf-8", data=body, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
        try:
            with _opener.open(request, timeout=self._timeout) as response:
                raw = response.read(1_000_000).decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise AlipayError(f"{method}: HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:  # timeouts, refused connections, bad URLs, bad UTF-8
            raise AlipayError(f"{method}: {type(exc).__name__}") from None
        try:
            return self._verify_and_return_sync_response(raw, response_type)
        except AliPayValidationError:
            raise AlipayError(f"{method}: the answer's signature is wrong") from None
        except AliPayException:
            raise AlipayError(f"{method}: an unsigned refusal") from None
        except (ValueError, AttributeError, TypeError):
            raise AlipayError(f"{method}: the answer is not Alipay's JSON") from None


class AlipayProvider(PaymentProvider):
    name = ALIPAY
    currencies = frozenset({"CNY"})

    def __init__(self):
        self.app_id = settings.ALIPAY_APP_ID
        self.gateway = settings.ALIPAY_GATEWAY_URL

    def __repr__(self):  # the keys stay out of any repr
        return f"AlipayProvider(app_id={self.app_id!r}, gateway={self.gateway!r})"

    def _client(self) -> _Client:
        """Raises AlipayError (naming the setting, not its value) for a key that does not load."""
        try:
            return _Client(
                appid=self.app_id,
                app_private_key_string=settings.ALIPAY_APP_PRIVATE_KEY,
                alipay_public_key_string=settings.ALIPAY_PUBLIC_KEY,
                sign_type="RSA2",
                gateway=self.gateway,
                timeout=settings.ALIPAY_TIMEOUT_SECONDS,
            )
        except (ValueError, TypeError, IndexError):
            raise AlipayError("ALIPAY_APP_PRIVATE_KEY or ALIPAY_PUBLIC_KEY does not load as an RSA key") from None

    # --- pay

    def payment_start(self, *, request: PaymentRequest) -> PaymentStart:
        # A refusal (a ShopError), not an outage: it does not count against the breaker.
        if not self.takes_currency(request.currency):
            raise UnknownProvider()
        client = self._client()
        biz = {
            "out_trade_no": request.order_no,
            "total_amount": _money(request.amount),
            "subject": request.subject[:256] or request.order_no,
            "time_expire": beijing(request.deadline),
        }
        if request.device == "pc" and settings.ALIPAY_QR:
            answer = client.server_api("alipay.trade.precreate", biz, notify_url=request.notify_url)
            _succeeded("alipay.trade.precreate", answer)
            if not answer.get("qr_code"):
                raise AlipayError("alipay.trade.precreate: no qr_code in the answer")
            return PaymentStart(qr_code=answer["qr_code"])
        if request.device == "mobile":
            method, product_code = "alipay.trade.wap.pay", "QUICK_WAP_PAY"
            biz["quit_url"] = request.return_url
        else:
            method, product_code = "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"
        query = client.client_api(
            method,
            {**biz, "product_code": product_code},
            notify_url=request.notify_url,
            return_url=request.return_url,
        )
        return PaymentStart(pay_url=f"{self.gateway}?{query}")

    # --- notifications

    def notification_verify(
        self, *, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> PaymentNotification:
        """Raises InvalidSignature, MalformedNotification, WrongMerchant, and
        NotificationIgnored for a genuine notification of no payment."""
        try:
            params = dict(parse_qsl(bytes(body).decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise MalformedNotification() from None
        signature = params.pop("sign", "")
        sign_type = params.pop("sign_type", "RSA2")
        if not signature or sign_type != "RSA2":
            raise InvalidSignature()
        try:
            valid = self._client().verify(dict(params), signature)
        except (ValueError, TypeError, IndexError, AliPayException):  # bad base64, bad lengths
            valid = False
        if not valid:
            raise InvalidSignature()
        if any(not params.get(field) for field in _NOTIFICATION_FIELDS):
            raise MalformedNotification()
        if params["app_id"] != self.app_id:
            raise WrongMerchant()
        try:
            timestamp = beijing_parse(params["notify_time"])
        except ValueError:
            raise MalformedNotification() from None
        if params.get("out_biz_no"):
            return _refunded(params, timestamp=timestamp)
        if params["trade_status"] not in PAID_STATUSES:
            raise NotificationIgnored()
        return _paid(
            trade_no=params["trade_no"],
            order_no=params["out_trade_no"],
            money=params.get("total_amount", ""),
            timestamp=timestamp,
        )

    def notification_answer(self, *, accepted: bool, detail: str = "") -> WebhookAnswer:
        # Only "success" stops Alipay's retries; the status code says the rest.
        return WebhookAnswer(body=b"success" if accepted else f"fail: {detail}".encode())

    # --- query, close, refund

    def payment_query(self, *, order_no: str) -> PaymentNotification | None:
        answer = self._client().server_api("alipay.trade.query", {"out_trade_no": order_no})
        if _not_exist(answer):
            return None
        _succeeded("alipay.trade.query", answer)
        if answer.get("trade_status") not in PAID_STATUSES:
            return None
        if answer.get("out_trade_no") not in (None, order_no):
            raise AlipayError("alipay.trade.query answered for another order")
        return _paid(
            trade_no=str(answer.get("trade_no") or ""),
            order_no=order_no,
            money=str(answer.get("total_amount")),
            timestamp=timezone.now(),
        )

    def payment_close(self, *, order_no: str) -> None:
        """Close the order's trade. One Alipay never created (the buyer never
        opened the page) is nothing to close; one paid meanwhile cannot be
        closed: its payment arrives as a late payment."""
        answer = self._client().server_api("alipay.trade.close", {"out_trade_no": order_no})
        if _not_exist(answer):
            return
        if answer.get("code") != SUCCESS:
            logger.info("alipay trade of order %s not closed: %s", order_no, _codes(answer))

    def refund_start(self, *, order_no: str, event_id: str, amount: Decimal, currency: str) -> PaymentNotification:
        """Refund the payment `event_id` (Alipay's trade_no) now. Synchronous:
        returns the `refunded` notification for the caller to record. Asked
        again (an earlier answer lost), Alipay refunds nothing more
        (same out_request_no) and answers the same."""
        request_no = out_request_no(event_id)
        answer = self._client().server_api(
            "alipay.trade.refund",
            {"trade_no": event_id, "refund_amount": _money(amount), "out_request_no": request_no},
        )
        _succeeded("alipay.trade.refund", answer)
        if answer.get("trade_no") not in (None, event_id):
            raise AlipayError("alipay.trade.refund answered for another payment")
        return PaymentNotification(
            event_id=request_no,
            order_no=order_no,
            amount=Decimal(amount),
            currency=currency,
            kind=PaymentEvent.Kind.REFUNDED,
            timestamp=timezone.now(),
            payment_event_id=event_id,
        )


def _succeeded(what: str, answer: Mapping) -> None:
    if answer.get("code") != SUCCESS:
        raise AlipayError(f"{what} refused: {_codes(answer)}")


def _not_exist(answer: Mapping) -> bool:
    return answer.get("code") != SUCCESS and answer.get("sub_code") == TRADE_NOT_EXIST


def _codes(answer: Mapping) -> str:
    # Alipay's own codes and message (e.g. "交易不存在"), short; they never echo a key.
    return f"code {answer.get('code')!r}, {answer.get('sub_code', '')!s} {str(answer.get('sub_msg', ''))[:200]}"


def _amount(money: str) -> Decimal:
    try:
        amount = Decimal(money)
    except InvalidOperation:
        raise MalformedNotification() from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise MalformedNotification()
    return amount


def _ids_valid(*, trade_no: str, order_no: str) -> bool:
    return bool(trade_no) and len(trade_no) <= 64 and bool(order_no) and len(order_no) <= 32


def _paid(*, trade_no: str, order_no: str, money: str, timestamp: datetime) -> PaymentNotification:
    if not _ids_valid(trade_no=trade_no, order_no=order_no):
        raise MalformedNotification()
    return PaymentNotification(
        event_id=trade_no,
        order_no=order_no,
        amount=_amount(money),
        currency="CNY",
        kind=PaymentEvent.Kind.PAID,
        timestamp=timestamp,
    )


def _refunded(params: Mapping[str, str], *, timestamp: datetime) -> PaymentNotification:
    """A refund Alipay notifies: the event id is the refund request number,
    the one refund_start records, so it is recorded once either way. A refund
    asked elsewhere (Alipay's merchant site: another request number) is a
    refund too. refund_fee is the trade's refunded total: the shop asks for
    one whole refund per payment, so it is this refund's amount."""
    if not _ids_valid(trade_no=params["trade_no"], order_no=params["out_trade_no"]):
        raise MalformedNotification()
    if not re.fullmatch(r"[\w.-]{1,64}", params["out_biz_no"]):
        raise MalformedNotification()
    return PaymentNotification(
        event_id=params["out_biz_no"],
        order_no=params["out_trade_no"],
        amount=_amount(params.get("refund_fee", "")),
        currency="CNY",
        kind=PaymentEvent.Kind.REFUNDED,
        timestamp=timestamp,
        payment_event_id=params["trade_no"],
    )
