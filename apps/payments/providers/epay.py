"""易支付 (epay): the 彩虹易支付 protocol most Chinese card shops use.

- Pay: a page jump. The buyer is sent to `{EPAY_GATEWAY_URL}/submit.php` with
  the signed parameters in the URL; the gateway's cashier page shows the
  channel's QR code (pc) or opens the wallet (phone). The page jump needs no
  call from the shop to the gateway, so starting a payment cannot hang on a
  slow gateway, and every epay deployment supports it (mapi.php, the API
  variant, is not enabled everywhere).
- Signature (MD5): every parameter except `sign`, `sign_type` and empty
  values, sorted by name (ASCII), `k=v` joined with `&`, then the merchant key
  appended directly (no `&key=`); md5, lowercase hex.
- Notification: a GET to the notify URL with `pid, trade_no, out_trade_no,
  type, name, money, trade_status, sign, sign_type`. Only `TRADE_SUCCESS` is a
  payment. epay wants the plain body `success`; anything else and it retries.
  epay sends no timestamp: the notification is dated when it is received, so
  the webhook's age check always passes; a replay is harmless anyway, because
  the event id (epay's `trade_no`) is deduped.
- Query: `api.php?act=order` (status 1: paid, 2: refunded).
- Refund: `api.php?act=refund`. It is synchronous: epay sends no refund
  notification, so refund_start returns the `refunded` notification itself
  and the caller records it (apps/payments/refunds.py).
- Close: epay has no close API; an order that ended unpaid has nothing to
  close there (a payment that still arrives is a late payment).
- Currency: CNY only. epay payments carry no expiry of their own.

The merchant key signs everything and is itself sent to api.php (in the URL
of act=order): no URL, body or gateway exception text of those calls is ever
logged or raised. Errors name the call and the kind of failure only.
"""

import hashlib
import hmac
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, urlencode

from django.conf import settings
from django.utils import timezone

from apps.core.request_body import json_loads

from ..exceptions import InvalidSignature, MalformedNotification, NotPaidNotification, UnknownProvider, WrongMerchant
from ..models import PaymentEvent
from .base import PaymentNotification, PaymentProvider, PaymentRequest, PaymentStart, WebhookAnswer

logger = logging.getLogger(__name__)

EPAY = "epay"
TRADE_SUCCESS = "TRADE_SUCCESS"
# api.php act=order: the order's status.
STATUS_PAID = 1
STATUS_REFUNDED = 2
_NOTIFICATION_FIELDS = ("pid", "trade_no", "out_trade_no", "type", "money", "trade_status")
_UNSIGNED = frozenset({"sign", "sign_type"})

# The gateway is called directly, never through a proxy set in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EpayError(Exception):
    """A call to the gateway failed. The text names the call and the kind of
    failure, never a URL or body (they carry the merchant key)."""


def epay_sign(params: Mapping[str, str], key: str) -> str:
    """The MD5 signature of `params` with the merchant `key`."""
    signed = sorted((name, str(value)) for name, value in params.items() if name not in _UNSIGNED and value != "")
    text = "&".join(f"{name}={value}" for name, value in signed) + key
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def epay_signature_valid(params: Mapping[str, str], key: str) -> bool:
    given = params.get("sign") or ""
    if not key or (params.get("sign_type") or "MD5").upper() != "MD5":
        return False
    return hmac.compare_digest(epay_sign(params, key).encode("ascii"), given.lower().encode("utf-8", "replace"))


def _money(amount: Decimal) -> str:
    return str(Decimal(amount).quantize(Decimal("0.01")))


class EpayProvider(PaymentProvider):
    name = EPAY
    currencies = frozenset({"CNY"})
    channels = ("alipay", "wxpay", "qqpay")
    notifies_by_get = True

    def __init__(self):
        self.gateway = settings.EPAY_GATEWAY_URL.rstrip("/")
        self.pid = settings.EPAY_PID
        self._key = settings.EPAY_KEY

    def __repr__(self):  # the key stays out of any repr
        return f"EpayProvider(gateway={self.gateway!r}, pid={self.pid!r})"

    # --- pay

    def payment_start(self, *, request: PaymentRequest) -> PaymentStart:
        # A refusal (a ShopError), not an outage: it does not count against the breaker.
        if request.channel not in self.channels or not self.takes_currency(request.currency):
            raise UnknownProvider()
        params = {
            "pid": self.pid,
            "type": request.channel,
            "out_trade_no": request.order_no,
            "notify_url": request.notify_url,
            "return_url": request.return_url,
            "name": request.subject[:100],
            "money": _money(request.amount),
        }
        params["sign"] = epay_sign(params, self._key)
        params["sign_type"] = "MD5"
        return PaymentStart(pay_url=f"{self.gateway}/submit.php?{urlencode(params)}")

    # --- notifications

    def notification_verify(
        self, *, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> PaymentNotification:
        params = {name: query.get(name) for name in query}
        if not params.get("sign") and body:
            # A deployment that POSTs the same fields as a form.
            try:
                params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                raise MalformedNotification() from None
        if not epay_signature_valid(params, self._key):
            raise InvalidSignature()
        if any(not params.get(field) for field in _NOTIFICATION_FIELDS):
            raise MalformedNotification()
        if params["pid"] != self.pid:
            raise WrongMerchant()
        if params["trade_status"] != TRADE_SUCCESS:
            raise NotPaidNotification()
        return _paid(trade_no=params["trade_no"], order_no=params["out_trade_no"], money=params["money"])

    def notification_answer(self, *, accepted: bool, detail: str = "") -> WebhookAnswer:
        # Only "success" stops epay's retries; the status code says the rest.
        return WebhookAnswer(body=b"success" if accepted else f"fail: {detail}".encode())

    # --- query, close, refund

    def payment_query(self, *, order_no: str) -> PaymentNotification | None:
        """epay's answer for the order: its paid notification when paid, else
        None. An order epay does not know (the buyer never opened the page)
        answers None too: epay's "not found" and its other refusals share one
        code, so the refusal is logged (without the key) and not raised, lest
        every unopened order count against the provider's breaker."""
        answer = self._order_get(out_trade_no=order_no)
        if answer is None or _status(answer) != STATUS_PAID:
            return None
        if answer.get("out_trade_no") not in (None, order_no):
            raise EpayError("act=order answered for another order")
        return _paid(trade_no=str(answer.get("trade_no") or ""), order_no=order_no, money=str(answer.get("money")))

    def payment_close(self, *, order_no: str) -> None:
        """epay has no close API: an unpaid epay order simply stays unpaid there."""
        return None

    def refund_start(self, *, order_no: str, event_id: str, amount: Decimal, currency: str) -> PaymentNotification:
        """Refund the payment `event_id` (epay's trade_no) now. Synchronous:
        returns the `refunded` notification for the caller to record, as epay
        sends none. A payment epay already shows as refunded (an earlier call
        whose answer was lost) is not refunded again."""
        answer = self._order_get(trade_no=event_id)
        if answer is None or _status(answer) not in (STATUS_PAID, STATUS_REFUNDED):
            raise EpayError("act=refund: epay does not show this payment as paid")
        if _status(answer) == STATUS_PAID:
            result = self._call(
                "act=refund",
                f"{self.gateway}/api.php?act=refund",
                data={"pid": self.pid, "key": self._key, "trade_no": event_id, "money": _money(amount)},
            )
            if result.get("code") != 1:
                raise EpayError(f"act=refund refused: code {result.get('code')!r}, {_msg(result)}")
        return PaymentNotification(
            event_id=f"refund-{event_id}",
            order_no=order_no,
            amount=Decimal(amount),
            currency=currency,
            kind=PaymentEvent.Kind.REFUNDED,
            timestamp=timezone.now(),
        )

    # --- HTTP

    def _order_get(self, **which: str) -> dict | None:
        """api.php act=order for one order (by out_trade_no or trade_no); None
        when epay refuses (not found, or a refusal it does not tell apart)."""
        query = urlencode({"act": "order", "pid": self.pid, "key": self._key, **which})
        answer = self._call("act=order", f"{self.gateway}/api.php?{query}")
        if answer.get("code") != 1:
            logger.warning("epay act=order for %s: code %r, %s", which, answer.get("code"), _msg(answer))
            return None
        return answer

    def _call(self, what: str, url: str, data: Mapping[str, str] | None = None) -> dict:
        """GET (or POST `data` as a form) and read the JSON answer. Raises
        EpayError naming `what` only: the URL and body carry the key."""
        body = urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, method="POST" if data is not None else "GET")
        if body is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with _opener.open(request, timeout=settings.EPAY_TIMEOUT_SECONDS) as response:
                raw = response.read(1_000_000)
        except urllib.error.HTTPError as exc:
            raise EpayError(f"{what}: HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:  # timeouts, refused connections, bad URLs
            raise EpayError(f"{what}: {type(exc).__name__}") from None
        try:
            answer = json_loads(raw)
        except ValueError:  # not JSON, bad UTF-8, or nested too deep
            raise EpayError(f"{what}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise EpayError(f"{what}: the answer is not a JSON object")
        try:
            answer["code"] = int(answer.get("code"))
        except (TypeError, ValueError):
            answer["code"] = None
        return answer


def _status(answer: Mapping) -> int | None:
    try:
        return int(answer.get("status"))
    except (TypeError, ValueError):
        return None


def _msg(answer: Mapping) -> str:
    # epay's own message (e.g. "订单号不存在"), short; it never echoes the key.
    return str(answer.get("msg", ""))[:200]


def _paid(*, trade_no: str, order_no: str, money: str) -> PaymentNotification:
    try:
        amount = Decimal(money)
    except InvalidOperation:
        raise MalformedNotification() from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise MalformedNotification()
    if not trade_no or len(trade_no) > 128 or not order_no or len(order_no) > 32:
        raise MalformedNotification()
    return PaymentNotification(
        event_id=trade_no,
        order_no=order_no,
        amount=amount,
        currency="CNY",
        kind=PaymentEvent.Kind.PAID,
        timestamp=timezone.now(),
    )
