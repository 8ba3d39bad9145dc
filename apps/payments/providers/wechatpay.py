"""WeChat Pay API v3 (微信支付), through wechatpayv3.

- Pay: on a computer, **Native** (`/v3/pay/transactions/native`): WeChat
  answers a `code_url` (weixin://…) the order page draws as a QR code for the
  buyer to scan with WeChat. On a phone, **H5** (`/v3/pay/transactions/h5`,
  with the buyer's IP and `h5_info.type=Wap`): WeChat answers an `h5_url` the
  buyer's browser is sent to, which opens the WeChat app. `out_trade_no` is
  the order number, `amount.total` the amount in fen, `time_expire` the
  order's payment deadline (RFC 3339, +08:00).
- Requests are signed with the merchant's API private key (`Authorization:
  WECHATPAY2-SHA256-RSA2048 mchid=…,serial_no=…,signature=…`); WeChat's
  answers and notifications are verified with the **WeChat Pay public key**
  (`WECHATPAY_PUBLIC_KEY`, its id `WECHATPAY_PUBLIC_KEY_ID`), not with
  downloaded platform certificates: the SDK then never fetches certificates.
- Notification: a JSON POST signed over `timestamp\\nnonce\\nbody\\n`
  (`Wechatpay-Signature`, `-Timestamp`, `-Nonce`, `-Serial`), its `resource`
  encrypted with AEAD_AES_256_GCM under the APIv3 key. `TRANSACTION.SUCCESS`
  is a payment (event id: WeChat's `transaction_id`, the same an active query
  finds), `REFUND.SUCCESS` a refund (event id: `refund_id`); other events are
  genuine but ignored. The time checked for staleness is `Wechatpay-Timestamp`,
  which the signature covers.
- Query and close by `out_trade_no`; refunds (`/v3/refund/domestic/refunds`)
  are asynchronous: WeChat confirms with a `REFUND.SUCCESS` notification.

The only difference between production and the tests is the base URL
(`WECHATPAY_API_BASE`): the SDK hard-codes https://api.mch.weixin.qq.com in
its core's `_gate_way`, which is set here. No logger is handed to the SDK (at
debug it logs request headers and decrypted notifications), and no error
carries a key, a signature or a body: only the call and how it failed.
"""

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from wechatpayv3 import WeChatPay, WeChatPayType

from apps.core.request_body import json_loads

from ..exceptions import (
    InvalidSignature,
    MalformedNotification,
    NotificationIgnored,
    NotPaidNotification,
    UnknownProvider,
    WrongMerchant,
)
from ..models import PaymentEvent
from ..provider_payments import provider_payment_record, provider_payment_references
from .base import PaymentNotification, PaymentProvider, PaymentRequest, PaymentStart, WebhookAnswer

logger = logging.getLogger(__name__)

WECHATPAY = "wechatpay"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
CHINA_TIME = ZoneInfo("Asia/Shanghai")
# (connect, read) seconds: a buyer waits on these calls.
TIMEOUT = (5, 10)

PAID_EVENT = "TRANSACTION.SUCCESS"
REFUND_EVENT = "REFUND.SUCCESS"
# trade_state of a transaction that was paid (REFUND: paid, then refunded).
PAID_STATES = frozenset({"SUCCESS", "REFUND"})
# Close answers that mean "nothing open to close".
NOTHING_TO_CLOSE = frozenset({"ORDER_NOT_EXIST", "ORDERNOTEXIST", "ORDERPAID", "ORDER_PAID", "ORDERCLOSED"})
NOT_FOUND = frozenset({"ORDER_NOT_EXIST", "ORDERNOTEXIST", "RESOURCE_NOT_EXISTS"})


class WeChatPayError(Exception):
    """A call to WeChat Pay failed. The text names the call and how it failed
    (HTTP status and WeChat's error code), never a key or a body."""


def amount_to_fen(amount: Decimal) -> int:
    """9.90 -> 990. Raises ValueError for a fraction of a fen."""
    fen = Decimal(amount).scaleb(2)
    if fen != fen.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of fen")
    return int(fen)


def amount_from_fen(fen: int) -> Decimal:
    return Decimal(fen).scaleb(-2).quantize(Decimal("0.01"))


def time_expire(deadline: datetime) -> str:
    """The deadline as WeChat wants it: RFC 3339 in China time, e.g. 2026-01-02T10:34:56+08:00."""
    return deadline.astimezone(CHINA_TIME).isoformat(timespec="seconds")


class WechatPayProvider(PaymentProvider):
    name = WECHATPAY
    currencies = frozenset({"CNY"})

    def __init__(self):
        self.mchid = settings.WECHATPAY_MCHID
        self.appid = settings.WECHATPAY_APPID
        self.api_base = settings.WECHATPAY_API_BASE.rstrip("/")

    def __repr__(self):  # the keys stay out of any repr
        return f"WechatPayProvider(api_base={self.api_base!r}, mchid={self.mchid!r})"

    def _client(self, kind: WeChatPayType = WeChatPayType.NATIVE) -> WeChatPay:
        public_key, public_key_id = settings.WECHATPAY_PUBLIC_KEY, settings.WECHATPAY_PUBLIC_KEY_ID
        if not (self.mchid and settings.WECHATPAY_PRIVATE_KEY and public_key and public_key_id):
            # Without the public key the SDK would download platform certificates.
            raise WeChatPayError("WeChat Pay is not configured (WECHATPAY_* settings)")
        try:
            client = WeChatPay(
                wechatpay_type=kind,
                mchid=self.mchid,
                private_key=settings.WECHATPAY_PRIVATE_KEY,
                cert_serial_no=settings.WECHATPAY_CERT_SERIAL,
                appid=self.appid,
                apiv3_key=settings.WECHATPAY_API_V3_KEY,
                timeout=TIMEOUT,
                public_key=public_key,
                public_key_id=public_key_id,
            )
        except Exception:
            raise WeChatPayError(
                "the WeChat Pay keys do not load (WECHATPAY_PRIVATE_KEY, WECHATPAY_PUBLIC_KEY)"
            ) from None
        # The SDK hard-codes https://api.mch.weixin.qq.com here; everything else is unchanged.
        client._core._gate_way = self.api_base
        return client

    # --- pay

    def payment_start(self, *, request: PaymentRequest) -> PaymentStart:
        """Native (pc: a QR code) or H5 (mobile: a page). Raises UnknownProvider
        for another currency; WeChatPayError when WeChat refuses or fails."""
        if request.channel or not self.takes_currency(request.currency):
            raise UnknownProvider()
        h5 = request.device == "mobile"
        kind = WeChatPayType.H5 if h5 else WeChatPayType.NATIVE
        scene_info = {"payer_client_ip": request.client_ip, "h5_info": {"type": "Wap"}} if h5 else None
        answer = _call(
            "pay",
            self._client(kind).pay,
            description=request.subject[:127] or request.order_no,
            out_trade_no=request.order_no,
            amount={"total": amount_to_fen(request.amount), "currency": "CNY"},
            time_expire=time_expire(request.deadline),
            scene_info=scene_info,
            notify_url=request.notify_url,
            pay_type=kind,
        )
        url = answer.get("h5_url" if h5 else "code_url")
        if not isinstance(url, str) or not url:
            raise WeChatPayError("pay: the answer has no h5_url/code_url")
        provider_payment_record(order_no=request.order_no, provider=self.name, reference=request.order_no)
        return PaymentStart(pay_url=url) if h5 else PaymentStart(qr_code=url)

    # --- query, close, refund

    def payment_query(self, *, order_no: str) -> PaymentNotification | None:
        """WeChat's transaction for the order: its paid notification when paid
        (SUCCESS, or REFUND: paid and refunded since), else None (not found,
        not paid yet, closed)."""
        answer = _call("query", self._client().query, out_trade_no=order_no, not_found_ok=True)
        if answer is None or answer.get("trade_state") not in PAID_STATES:
            return None
        if answer.get("out_trade_no") != order_no or answer.get("mchid") != self.mchid:
            raise WeChatPayError("query: answered for another order or merchant")
        return self._paid(answer, timestamp=timezone.now())

    def payment_close(self, *, order_no: str) -> None:
        """Close the order's transaction, if a payment was started for it. One
        that WeChat does not know or that was paid meanwhile has nothing to
        close (a payment made still arrives, as a late payment)."""
        if not provider_payment_references(order_no=order_no, provider=self.name):
            return
        code, text = _request("close", self._client().close, out_trade_no=order_no)
        if 200 <= code < 300:
            return
        error = _error_code(text)
        if code in (400, 403, 404) and error in NOTHING_TO_CLOSE:
            logger.info("wechatpay close of order %s: nothing to close (%s)", order_no, error)
            return
        raise WeChatPayError(f"close: HTTP {code} {error}")

    def refund_start(self, *, order_no: str, event_id: str, amount: Decimal, currency: str) -> None:
        """Refund `amount` of the payment `event_id` (WeChat's transaction_id).
        `out_refund_no` is derived from it, so a repeated request is one refund
        at WeChat. Asynchronous: WeChat confirms with REFUND.SUCCESS later."""
        if currency != "CNY":
            raise WeChatPayError("refund: WeChat Pay refunds CNY only")
        client = self._client()
        payment = _call("query", client.query, transaction_id=event_id)
        total = (payment.get("amount") or {}).get("total")
        if payment.get("out_trade_no") != order_no or not _is_fen(total):
            raise WeChatPayError("refund: the transaction is not this order's")
        answer = _call(
            "refund",
            client.refund,
            out_refund_no=f"R{event_id}"[:64],
            amount={"refund": amount_to_fen(amount), "total": total, "currency": "CNY"},
            transaction_id=event_id,
            notify_url=settings.SITE_URL.rstrip("/") + reverse("payments:webhook", kwargs={"provider": self.name}),
        )
        logger.info("wechatpay refund of order %s asked: %s", order_no, answer.get("status"))
        return None

    # --- notifications

    def notification_verify(
        self, *, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> PaymentNotification:
        """Raises InvalidSignature (a signature, serial or encrypted resource
        that does not verify), MalformedNotification, WrongMerchant,
        NotPaidNotification, and NotificationIgnored for a genuine event the
        shop does not act on."""
        names = ("Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial")
        signed = {name: headers.get(name) or "" for name in names}
        signed["Wechatpay-Signature-Type"] = headers.get("Wechatpay-Signature-Type") or SIGNATURE_TYPE
        if not all(signed.values()) or signed["Wechatpay-Signature-Type"] != SIGNATURE_TYPE:
            raise InvalidSignature()
        # Only the configured public key is trusted; another serial would make
        # the SDK download platform certificates.
        if signed["Wechatpay-Serial"] != settings.WECHATPAY_PUBLIC_KEY_ID:
            raise InvalidSignature()
        if not signed["Wechatpay-Timestamp"].isdigit() or len(signed["Wechatpay-Timestamp"]) > 12:
            raise InvalidSignature()
        try:
            text = bytes(body).decode("utf-8")
            # Parsed here, depth bounded, before the SDK parses it again.
            envelope = json_loads(text)
        except ValueError:  # also too deep, and bad UTF-8
            raise InvalidSignature() from None
        if not isinstance(envelope, dict):
            raise InvalidSignature()
        try:
            plain = self._client().decrypt_callback(signed, text)
        except WeChatPayError:
            raise InvalidSignature() from None
        except Exception:  # the SDK raises bare Exceptions (an unknown algorithm)
            raise MalformedNotification() from None
        if not plain:
            # A wrong signature, or a resource that does not decrypt (GCM
            # authenticates it) with this merchant's APIv3 key.
            raise InvalidSignature()
        try:
            resource = json_loads(plain)
        except ValueError:
            raise MalformedNotification() from None
        if not isinstance(resource, dict):
            raise MalformedNotification()
        timestamp = datetime.fromtimestamp(int(signed["Wechatpay-Timestamp"]), tz=UTC)
        event_type = envelope.get("event_type")
        if event_type == PAID_EVENT:
            if resource.get("mchid") != self.mchid or resource.get("appid") != self.appid:
                raise WrongMerchant()
            if resource.get("trade_state") != "SUCCESS":
                raise NotPaidNotification()
            return self._paid(resource, timestamp=timestamp)
        if event_type == REFUND_EVENT:
            if resource.get("mchid") != self.mchid:
                raise WrongMerchant()
            if resource.get("refund_status") != "SUCCESS":
                raise NotificationIgnored()
            refund = (resource.get("amount") or {}).get("refund")
            return _notification(
                event_id=resource.get("refund_id"),
                order_no=resource.get("out_trade_no"),
                fen=refund,
                currency=(resource.get("amount") or {}).get("currency") or "CNY",
                kind=PaymentEvent.Kind.REFUNDED,
                timestamp=timestamp,
                payment_event_id=resource.get("transaction_id"),
            )
        raise NotificationIgnored()

    def notification_answer(self, *, accepted: bool, detail: str = "") -> WebhookAnswer:
        # WeChat reads the status (2xx: received); on a failure it wants
        # {"code": "FAIL", "message": …} and sends the notification again.
        if accepted:
            body = {"code": "SUCCESS", "message": "OK"}
        else:
            body = {"code": "FAIL", "message": detail or "refused"}
        return WebhookAnswer(body=json.dumps(body).encode(), content_type="application/json")

    def _paid(self, transaction: Mapping, *, timestamp: datetime) -> PaymentNotification:
        if transaction.get("appid") != self.appid:
            raise WrongMerchant()
        amount = transaction.get("amount") or {}
        return _notification(
            event_id=transaction.get("transaction_id"),
            order_no=transaction.get("out_trade_no"),
            fen=amount.get("total"),
            currency=amount.get("currency") or "CNY",
            kind=PaymentEvent.Kind.PAID,
            timestamp=timestamp,
        )


# --- helpers


def _request(what: str, method, **kwargs) -> tuple[int, str]:
    """The SDK call's (status, text). Raises WeChatPayError naming `what` only."""
    try:
        code, text = method(**kwargs)
    except Exception as exc:  # timeouts, refused connections, an answer whose signature fails
        reason = "the answer's signature does not verify" if "signature" in str(exc) else type(exc).__name__
        raise WeChatPayError(f"{what}: {reason}") from None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return code, text or ""


def _call(what: str, method, *, not_found_ok: bool = False, **kwargs) -> dict | None:
    """A call that answers a JSON object on success. With not_found_ok, a 404
    answers None."""
    code, text = _request(what, method, **kwargs)
    if not 200 <= code < 300:
        error = _error_code(text)
        if not_found_ok and code == 404 and error in NOT_FOUND:
            return None
        raise WeChatPayError(f"{what}: HTTP {code} {error}")
    try:
        answer = json_loads(text)
    except ValueError:
        raise WeChatPayError(f"{what}: the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise WeChatPayError(f"{what}: the answer is not a JSON object")
    return answer


def _error_code(text: str) -> str:
    """WeChat's error code from an error answer ({"code": "...", "message": "..."})."""
    try:
        code = json_loads(text).get("code")
    except (ValueError, AttributeError):
        return "(no error code)"
    return str(code)[:64] if code else "(no error code)"


def _is_fen(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _notification(
    *, event_id, order_no, fen, currency, kind: str, timestamp: datetime, payment_event_id=""
) -> PaymentNotification:
    if not (isinstance(event_id, str) and 0 < len(event_id) <= 128):
        raise MalformedNotification()
    if not (isinstance(order_no, str) and 0 < len(order_no) <= 32):
        raise MalformedNotification()
    if not _is_fen(fen) or currency != "CNY":
        raise MalformedNotification()
    if not isinstance(payment_event_id, str) or len(payment_event_id) > 128:
        raise MalformedNotification()
    return PaymentNotification(
        event_id=event_id,
        order_no=order_no,
        amount=amount_from_fen(fen),
        currency="CNY",
        kind=kind,
        timestamp=timestamp,
        payment_event_id=payment_event_id,
    )
