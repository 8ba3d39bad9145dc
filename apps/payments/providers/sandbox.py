"""The built-in sandbox provider. It behaves like a real one: its own payment
page, then a notification signed with HMAC-SHA256 and POSTed to the same
webhook real providers call, retried until the webhook answers 2xx. It moves
no money, so production lists it in PAYMENT_PROVIDERS only on purpose."""

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.urls import reverse

from apps.core.request_body import json_loads

from ..exceptions import InvalidSignature, MalformedNotification
from ..models import PaymentEvent
from ..sandbox_server import (
    FIELDS,
    OPTIONAL_FIELDS,
    SANDBOX,
    SIGNATURE_HEADER,
    notification_signature,
    sandbox_notification_deliver_task,
)
from .base import PaymentNotification, PaymentProvider, PaymentRequest, PaymentStart


def _event_id(kind: str, order_no: str) -> str:
    # One payment per order: a second click on "Pay" repeats the same event,
    # which the webhook dedupes.
    return f"sandbox-{kind}-{order_no}"


def _refund_event_id(payment_event_id: str) -> str:
    # At most one refund per payment, as a real provider's refund request
    # number derived from the payment: asking twice repeats the same event.
    return f"sandbox-refund-{payment_event_id}"[:128]


class SandboxProvider(PaymentProvider):
    name = SANDBOX

    # Its pay page is this site's own, so the order's token may travel in its URL.
    pages_on_this_site = True

    def payment_start(self, *, request: PaymentRequest) -> PaymentStart:
        return PaymentStart(pay_url=reverse("payments:sandbox-pay", kwargs={"order_no": request.order_no}))

    def notification_verify(
        self, *, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> PaymentNotification:
        given = headers.get(SIGNATURE_HEADER) or ""
        if not hmac.compare_digest(
            notification_signature(body).encode("ascii"), given.strip().encode("utf-8", "replace")
        ):
            raise InvalidSignature()
        return _notification_parse(body)

    def payment_make(self, *, order_no: str, amount: Decimal, currency: str) -> None:
        """The buyer pressed "Pay": notify the shop that the full amount was paid."""
        _notification_send(kind=PaymentEvent.Kind.PAID, order_no=order_no, amount=amount, currency=currency)

    def refund_start(self, *, order_no: str, event_id: str, amount: Decimal, currency: str) -> None:
        _notification_send(
            kind=PaymentEvent.Kind.REFUNDED,
            order_no=order_no,
            amount=amount,
            currency=currency,
            event_id=_refund_event_id(event_id),
            payment_event_id=event_id,
        )


def _notification_send(
    *, kind: str, order_no: str, amount: Decimal, currency: str, event_id: str = "", payment_event_id: str = ""
) -> None:
    """After commit: the sandbox's servers notify the webhook, with retries."""
    fields = {
        "event_id": event_id or _event_id(kind, order_no),
        "order_no": order_no,
        "amount": str(amount),
        "currency": currency,
        "kind": str(kind),
    }
    if payment_event_id:
        fields["payment_event_id"] = payment_event_id
    sandbox_notification_deliver_task.delay_on_commit(fields=fields)


def _notification_parse(body: bytes) -> PaymentNotification:
    try:
        data = json_loads(body)
    except ValueError:  # also too deep, and bad UTF-8
        raise MalformedNotification() from None
    if not isinstance(data, dict) or set(data) - set(OPTIONAL_FIELDS) != set(FIELDS):
        raise MalformedNotification()
    payment_event_id = data.get("payment_event_id", "")
    if not isinstance(payment_event_id, str) or len(payment_event_id) > 128:
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
        payment_event_id=payment_event_id,
    )
