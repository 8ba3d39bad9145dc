"""Stripe, through Checkout Sessions (stripe-python, the official SDK).

The buyer pays on Stripe's hosted page; Stripe notifies the webhook
(/payments/webhook/stripe) with signed events. The module is named so it does
not shadow the `stripe` package; the provider's name is "stripe".

Stripe refuses a session that expires sooner than 30 minutes (or later than 24
hours) after it is created. An order's own deadline is usually sooner (the
reservation lives 15 minutes), so the session then expires 30 minutes (and a
little) from now and the shop's deadline still rules: the reservation expires
at its time and its stock returns; a payment made on the still-open session
afterwards is a late payment (delivered if keys remain, else refunded), and
expiry or cancel closes the session (payment_close) where it can.
"""

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import stripe
from django.conf import settings
from django.utils import timezone

from apps.core.request_body import json_loads

from ..exceptions import (
    InvalidSignature,
    MalformedNotification,
    NotificationIgnored,
    StaleNotification,
    UnknownProvider,
)
from ..models import PaymentEvent
from ..provider_payments import provider_payment_references
from .base import PaymentNotification, PaymentProvider, PaymentRequest, PaymentStart

logger = logging.getLogger(__name__)

STRIPE = "stripe"
SIGNATURE_HEADER = "Stripe-Signature"

# Stripe's bounds on a Checkout Session's expires_at, counted from its creation.
SESSION_MIN_LIFE = timedelta(minutes=30)
SESSION_MAX_LIFE = timedelta(hours=24)
# Our clock and the request's travel: Stripe's "now" is a little later than ours.
SESSION_LIFE_MARGIN = timedelta(minutes=1)

# Amounts travel in the currency's smallest unit: 9.90 CNY is 990, 500 JPY is
# 500. Only currencies whose unit is known here are taken; a product priced in
# another is not offered Stripe.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW"})
TWO_DECIMAL_CURRENCIES = frozenset({"CNY", "USD", "EUR", "GBP", "HKD", "SGD", "AUD", "CAD", "CHF", "NZD"})

# A buyer waits on these calls: fail (and let the breaker count it) rather than hang.
REQUEST_TIMEOUT_SECONDS = 10
NETWORK_RETRIES = 2

PAID_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
REFUND_EVENT = "charge.refunded"


def amount_to_minor(amount: Decimal, currency: str) -> int:
    """9.90 CNY -> 990. Raises ValueError for a currency not taken here or an
    amount the currency cannot express (a fraction of a yen)."""
    scaled = Decimal(amount).scaleb(_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of the currency's smallest unit")
    return int(scaled)


def amount_from_minor(value: int, currency: str) -> Decimal:
    """990 CNY -> Decimal("9.90"). Raises ValueError for a currency not taken here."""
    return Decimal(value).scaleb(-_exponent(currency)).quantize(Decimal("0.01"))


def _exponent(currency: str) -> int:
    code = currency.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in TWO_DECIMAL_CURRENCIES:
        return 2
    raise ValueError(f"currency {currency!r} is not taken through Stripe here")


def session_expires_at(*, deadline: datetime, now: datetime) -> datetime:
    """The session's expiry: the order's deadline, held within Stripe's bounds
    (at least 30 minutes, at most 24 hours from now, with a margin)."""
    earliest = now + SESSION_MIN_LIFE + SESSION_LIFE_MARGIN
    latest = now + SESSION_MAX_LIFE - SESSION_LIFE_MARGIN
    return min(max(deadline, earliest), latest)


class StripeProvider(PaymentProvider):
    name = STRIPE
    currencies = ZERO_DECIMAL_CURRENCIES | TWO_DECIMAL_CURRENCIES

    def _client(self) -> stripe.StripeClient:
        # A client per provider object: no global stripe.api_key, so the key
        # lives in settings and in this object only.
        return stripe.StripeClient(
            settings.STRIPE_SECRET_KEY,
            base_addresses={"api": settings.STRIPE_API_BASE.rstrip("/")},
            max_network_retries=NETWORK_RETRIES,
            http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_SECONDS),
        )

    # --- starting, asking about, closing and refunding a payment

    def payment_start(self, *, request: PaymentRequest) -> PaymentStart:
        """A Checkout Session for the order (or its session still open, when
        the buyer comes back to pay). Raises UnknownProvider for a currency
        Stripe is not offered in; a Stripe error propagates (the caller makes
        it PaymentUnavailable)."""
        if not self.takes_currency(request.currency):
            raise UnknownProvider()
        unit_amount = amount_to_minor(request.amount, request.currency)
        client = self._client()
        for reference in provider_payment_references(order_no=request.order_no, provider=self.name)[:1]:
            session = client.v1.checkout.sessions.retrieve(reference)
            if (
                session.status == "open"
                and session.amount_total == unit_amount
                and (session.currency or "").upper() == request.currency
            ):
                return PaymentStart(pay_url=session.url, reference=session.id)
        expires_at = session_expires_at(deadline=request.deadline, now=timezone.now())
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": request.currency.lower(),
                            "unit_amount": unit_amount,
                            "product_data": {"name": request.subject[:250] or request.order_no},
                        },
                    }
                ],
                "client_reference_id": request.order_no,
                "metadata": {"order_no": request.order_no},
                # The PaymentIntent carries the order too: a refund event names
                # only the PaymentIntent.
                "payment_intent_data": {"metadata": {"order_no": request.order_no}},
                "success_url": request.return_url,
                "cancel_url": request.return_url,
                "expires_at": int(expires_at.timestamp()),
            }
        )
        return PaymentStart(pay_url=session.url, reference=session.id)

    def payment_query(self, *, order_no: str) -> PaymentNotification | None:
        client = self._client()
        for reference in provider_payment_references(order_no=order_no, provider=self.name):
            session = client.v1.checkout.sessions.retrieve(reference)
            if session.payment_status == "paid":
                return _paid_notification(session.to_dict(), timestamp=timezone.now())
        return None

    def payment_close(self, *, order_no: str) -> None:
        """Expire the order's open sessions. One paid meanwhile cannot be
        expired: its payment arrives as a late payment."""
        client = self._client()
        for reference in provider_payment_references(order_no=order_no, provider=self.name):
            session = client.v1.checkout.sessions.retrieve(reference)
            if session.status != "open":
                continue
            try:
                client.v1.checkout.sessions.expire(reference)
            except stripe.InvalidRequestError as exc:
                logger.info("stripe session of order %s not expired: %s", order_no, exc.code or "refused")

    def refund_start(self, *, order_no: str, event_id: str, amount: Decimal, currency: str) -> None:
        """Refund through the PaymentIntent (the payment's event id). The same
        refund asked twice is one refund at Stripe (the idempotency key); it
        is confirmed by a charge.refunded event."""
        minor = amount_to_minor(amount, currency)
        self._client().v1.refunds.create(
            params={"payment_intent": event_id, "amount": minor, "metadata": {"order_no": order_no}},
            options={"idempotency_key": f"refund-{event_id}-{minor}"},
        )

    # --- the webhook

    def notification_verify(
        self, *, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> PaymentNotification:
        """Raises InvalidSignature, StaleNotification (a genuine signature
        outside PAYMENT_WEBHOOK_TOLERANCE_SECONDS), MalformedNotification, and
        NotificationIgnored for a genuine event the shop has no use for."""
        header = headers.get(SIGNATURE_HEADER) or ""
        secret = settings.STRIPE_WEBHOOK_SECRET
        try:
            payload = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSignature() from None
        if not secret:
            raise InvalidSignature()
        # The signature first, then the shop's own parser: the SDK's
        # construct_event parses before it verifies, with json.loads, which a
        # deeply nested body turns into a RecursionError (a 500).
        try:
            stripe.WebhookSignature.verify_header(
                payload, header, secret, tolerance=settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError:
            raise _signature_refusal(payload, header, secret) from None
        except (ValueError, TypeError, AttributeError, KeyError):
            raise MalformedNotification() from None
        signed_at = _signature_timestamp(header)
        try:
            event = json_loads(payload)
        except ValueError:
            raise MalformedNotification() from None
        if not isinstance(event, dict):
            raise MalformedNotification()
        kind = event.get("type")
        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            raise MalformedNotification()
        if kind in PAID_EVENTS:
            if obj.get("payment_status") != "paid":
                # Completed, but paid later (a bank debit): async_payment_succeeded follows.
                raise NotificationIgnored()
            return _paid_notification(obj, timestamp=signed_at)
        if kind == REFUND_EVENT:
            return self._refund_notification(event, obj, timestamp=signed_at)
        raise NotificationIgnored()

    def _refund_notification(self, event: dict, charge: dict, *, timestamp: datetime) -> PaymentNotification:
        payment_intent = _id_of(charge.get("payment_intent"))
        order_no = _metadata_order_no(charge)
        if not order_no and payment_intent:
            # A charge does not carry its PaymentIntent's metadata: ask Stripe.
            intent = self._client().v1.payment_intents.retrieve(payment_intent)
            order_no = _metadata_order_no(intent.to_dict())
        if not order_no:
            raise NotificationIgnored()  # a charge of something else on the same Stripe account
        refunded = charge.get("amount_refunded")
        previous = ((event.get("data") or {}).get("previous_attributes") or {}).get("amount_refunded", 0)
        if not _is_count(refunded) or not _is_count(previous) or refunded <= previous:
            raise MalformedNotification()
        return _notification(
            event_id=event.get("id"),
            order_no=order_no,
            minor=refunded - previous,
            currency=charge.get("currency"),
            kind=PaymentEvent.Kind.REFUNDED,
            timestamp=timestamp,
            # The payment this refund returns (its event id is the PaymentIntent's):
            # the refund of an extra payment must not end the order.
            payment_event_id=payment_intent or "",
        )


def _paid_notification(session: dict, *, timestamp: datetime) -> PaymentNotification:
    """A paid Checkout Session as the shop's notification. Its event id is the
    PaymentIntent's, which the webhook and an active query both see."""
    order_no = session.get("client_reference_id") or _metadata_order_no(session)
    if not order_no:
        raise NotificationIgnored()  # a session of something else on the same Stripe account
    return _notification(
        event_id=_id_of(session.get("payment_intent")),
        order_no=order_no,
        minor=session.get("amount_total"),
        currency=session.get("currency"),
        kind=PaymentEvent.Kind.PAID,
        timestamp=timestamp,
    )


def _notification(
    *, event_id, order_no, minor, currency, kind: str, timestamp: datetime, payment_event_id: str = ""
) -> PaymentNotification:
    if not (isinstance(event_id, str) and 0 < len(event_id) <= 128):
        raise MalformedNotification()
    if not (isinstance(order_no, str) and 0 < len(order_no) <= 32):
        raise MalformedNotification()
    if not (_is_count(minor) and minor > 0 and isinstance(currency, str) and len(currency) == 3):
        raise MalformedNotification()
    try:
        amount = amount_from_minor(minor, currency)
    except ValueError:
        raise MalformedNotification() from None
    return PaymentNotification(
        event_id=event_id,
        order_no=order_no,
        amount=amount,
        currency=currency.upper(),
        kind=kind,
        timestamp=timestamp,
        payment_event_id=payment_event_id,
    )


def _signature_refusal(payload: str, header: str, secret: str) -> Exception:
    """A genuine signature made too long ago is stale; anything else is forged."""
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        return InvalidSignature()
    return StaleNotification()


def _signature_timestamp(header: str) -> datetime:
    """The `t=` of a verified Stripe-Signature header: when Stripe signed this
    delivery (each retry is signed afresh)."""
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            return datetime.fromtimestamp(int(value), tz=UTC)
    raise MalformedNotification()


def _metadata_order_no(obj: dict) -> str:
    metadata = obj.get("metadata")
    value = metadata.get("order_no") if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else ""


def _id_of(value) -> str | None:
    """An object's id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
