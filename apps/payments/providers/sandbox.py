"""The built-in sandbox provider. It behaves like a real one: its own payment
page, then a notification signed with HMAC-SHA256 and POSTed to the same
webhook real providers call, retried until the webhook answers 2xx. It moves
no money, so production lists it in PAYMENT_PROVIDERS only on purpose."""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from ..breaker import provider_post_guarded
from ..delivery import http_post, webhook_deliver
from ..exceptions import InvalidSignature, MalformedNotification
from ..models import PaymentEvent
from .base import PaymentNotification, PaymentProvider

SIGNATURE_HEADER = "X-Sandbox-Signature"
FIELDS = ("event_id", "order_no", "amount", "currency", "kind", "timestamp")


def _signature(body: bytes) -> str:
    return hmac.new(settings.SANDBOX_PAYMENT_SECRET.encode("utf-8"), body, hashlib.sha256).hexdigest()


def notification_sign(fields: Mapping[str, object]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a notification, as the sandbox sends it."""
    body = json.dumps(dict(fields), sort_keys=True, separators=(",", ":")).encode("utf-8")
    return body, {SIGNATURE_HEADER: _signature(body)}


def _event_id(kind: str, order_no: str) -> str:
    # One payment and at most one refund per order: a second click on "Pay"
    # repeats the same event, which the webhook dedupes.
    return f"sandbox-{kind}-{order_no}"


class SandboxProvider(PaymentProvider):
    name = "sandbox"

    def payment_start(self, *, order_no: str, token: str | None) -> str:
        url = reverse("payments:sandbox-pay", kwargs={"order_no": order_no})
        return f"{url}?{urlencode({'token': token})}" if token else url

    def notification_verify(self, *, body: bytes, headers: Mapping[str, str]) -> PaymentNotification:
        given = headers.get(SIGNATURE_HEADER) or ""
        if not hmac.compare_digest(_signature(body).encode("ascii"), given.strip().encode("utf-8", "replace")):
            raise InvalidSignature()
        return _notification_parse(body)

    def payment_make(self, *, order_no: str, amount: Decimal, currency: str) -> None:
        """The buyer pressed "Pay": notify the shop that the full amount was paid."""
        _notification_send(kind=PaymentEvent.Kind.PAID, order_no=order_no, amount=amount, currency=currency)

    def refund_start(self, *, order_no: str, amount: Decimal, currency: str) -> None:
        _notification_send(kind=PaymentEvent.Kind.REFUNDED, order_no=order_no, amount=amount, currency=currency)


def _notification_send(*, kind: str, order_no: str, amount: Decimal, currency: str) -> None:
    from ..tasks import sandbox_notification_deliver_task

    fields = {
        "event_id": _event_id(kind, order_no),
        "order_no": order_no,
        "amount": str(amount),
        "currency": currency,
        "kind": str(kind),
    }
    transaction.on_commit(lambda: sandbox_notification_deliver_task.delay(fields=fields))


def notification_deliver(*, fields: Mapping[str, str], post=http_post, sleep=time.sleep) -> int:
    """POST the notification to this site's sandbox webhook, signed afresh for
    each attempt, through the sandbox's circuit breaker: while it is open
    nothing is sent. Raises NotificationDeliveryFailed."""
    url = settings.SITE_URL.rstrip("/") + reverse("payments:webhook", kwargs={"provider": SandboxProvider.name})
    return webhook_deliver(
        url=url,
        message=lambda: notification_sign({**fields, "timestamp": int(time.time())}),
        attempts=settings.SANDBOX_WEBHOOK_ATTEMPTS,
        timeout=settings.SANDBOX_WEBHOOK_TIMEOUT_SECONDS,
        post=provider_post_guarded(SandboxProvider.name, post),
        sleep=sleep,
    )


def _notification_parse(body: bytes) -> PaymentNotification:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedNotification() from None
    if not isinstance(data, dict) or set(data) != set(FIELDS):
        raise MalformedNotification()
    texts = {name: data[name] for name in ("event_id", "order_no", "amount", "currency", "kind")}
    if not all(isinstance(value, str) and value for value in texts.values()):
        raise MalformedNotification()
    timestamp = data["timestamp"]
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise MalformedNotification()
    try:
        amount = Decimal(texts["amount"])
    except InvalidOperation:
        raise MalformedNotification() from None
    if not amount.is_finite() or amount <= 0 or texts["kind"] not in PaymentEvent.Kind.values:
        raise MalformedNotification()
    if len(texts["event_id"]) > 128 or len(texts["order_no"]) > 32 or len(texts["currency"]) != 3:
        raise MalformedNotification()
    try:
        when = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedNotification() from None
    return PaymentNotification(
        event_id=texts["event_id"],
        order_no=texts["order_no"],
        amount=amount,
        currency=texts["currency"],
        kind=texts["kind"],
        timestamp=when,
    )
