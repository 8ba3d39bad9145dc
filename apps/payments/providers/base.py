"""What every payment provider offers the shop.

A provider module (one per provider, beside this one) speaks its provider's
real protocol: it starts a payment for an order, verifies and reads the
provider's notifications, answers them as the provider expects, and asks the
provider about, closes and refunds a payment. Only its base URL differs
between production and the tests' local fake of the provider.

The shop's side of every call (the order's state, dedupe on the event id,
after-commit work) lives in apps/payments/services.py and the order
services; a provider never touches an order.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class PaymentNotification:
    """A provider's notification after its signature was verified: trusted data.
    Also what an active query answers when the provider says "paid"."""

    # The provider's own id of this event, unique per provider: the dedupe key.
    # For a payment, the provider's trade number, so a notification and an
    # active query finding the same payment act once.
    event_id: str
    order_no: str
    amount: Decimal
    currency: str
    kind: str  # a PaymentEvent.Kind value: "paid" or "refunded"
    timestamp: datetime
    # A refund: the event id (trade number) of the payment it returns, when
    # the provider names it. A refund of an extra payment must name it, or the
    # shop takes it for a refund of the order.
    payment_event_id: str = ""


@dataclass(frozen=True)
class PaymentRequest:
    """What a provider needs to start a payment of one order."""

    order_no: str
    amount: Decimal
    currency: str
    # What the buyer sees at the provider (the product's title).
    subject: str
    # The full method name chosen by the buyer: "stripe", or "epay.alipay"
    # (provider "epay", channel "alipay").
    method: str
    # The provider's own payment expiry is set to this moment.
    deadline: datetime
    # "pc" or "mobile" (from the User-Agent): Alipay page pay vs WAP pay, WeChat Native vs H5.
    device: str
    client_ip: str
    # Where the buyer comes back after paying (the order page, no token in it).
    return_url: str
    # This shop's webhook for the provider (absolute): /payments/webhook/<provider>.
    notify_url: str

    @property
    def channel(self) -> str:
        """The part after the provider's name ("alipay" of "epay.alipay"), or ""."""
        return self.method.partition(".")[2]


@dataclass(frozen=True)
class PaymentStart:
    """Where the buyer pays: a page to go to, or a QR code to scan (its text)."""

    pay_url: str = ""
    qr_code: str = ""
    # The provider's own id of the payment it opened (a Stripe Checkout
    # Session), kept to ask about and close it later; empty for a provider
    # that finds payments by the order number (epay, Alipay, WeChat Pay).
    reference: str = ""


@dataclass(frozen=True)
class WebhookAnswer:
    """The body the webhook answers the provider, in the provider's own terms
    (epay and Alipay: "success"). The status stays the shop's: 2xx once the
    change is committed, 4xx for a notification that will never be accepted,
    5xx for one to send again."""

    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class PaymentProvider(ABC):
    # The name in webhook URLs, PAYMENT_PROVIDERS and PaymentEvent.provider.
    name: str
    # Currencies it takes; empty: any.
    currencies: frozenset[str] = frozenset()
    # Channels offered as methods "<name>.<channel>" (epay: alipay, wxpay,
    # qqpay); none: one method named as the provider.
    channels: tuple[str, ...] = ()
    # True only for a provider whose pages are this site's own (the sandbox):
    # the buyer's order token may then travel in the pay URL.
    pages_on_this_site = False
    # True for a provider whose notifications arrive as GET (epay); others POST.
    notifies_by_get = False

    def methods(self) -> list[str]:
        """The full names of the methods this provider offers buyers."""
        return [f"{self.name}.{channel}" for channel in self.channels] or [self.name]

    def takes_currency(self, currency: str) -> bool:
        return not self.currencies or currency in self.currencies

    @abstractmethod
    def payment_start(self, *, request: PaymentRequest) -> PaymentStart:
        """Open a payment at the provider. Raises PaymentUnavailable (or any
        error, which the caller turns into it) when the provider fails."""

    @abstractmethod
    def notification_verify(
        self, *, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> PaymentNotification:
        """Check the signature of a webhook call (its body, headers and URL
        query: some providers notify by GET) and read it.
        Raises InvalidSignature or MalformedNotification."""

    def notification_answer(self, *, accepted: bool, detail: str = "") -> WebhookAnswer | None:
        """The body the provider expects back. None: the shop's own JSON
        answer (the sandbox)."""
        return None

    def payment_query(self, *, order_no: str) -> PaymentNotification | None:
        """Ask the provider whether the order was paid: its notification when
        it was, None when not (yet). Raises on a provider failure."""
        return None

    def payment_close(self, *, order_no: str) -> None:
        """Close the order's open payment at the provider, if any (the order
        was cancelled or expired), so the buyer can no longer pay it there.
        A provider without open payments to close has nothing to do."""
        return None

    @abstractmethod
    def refund_start(
        self, *, order_no: str, event_id: str, amount: Decimal, currency: str
    ) -> PaymentNotification | None:
        """Ask the provider to refund `amount` of the payment `event_id` (its
        trade number) of the order. Idempotent at the provider for the same
        payment (an idempotency key or the provider's refund request number
        derived from the event id). The provider confirms with a `refunded`
        notification later (returns None), or, for a provider whose refunds
        are synchronous (epay), returns that `refunded` notification now and
        the caller records it (apps/payments/refunds.py)."""
