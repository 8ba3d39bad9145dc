"""What every payment provider offers the shop."""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class PaymentNotification:
    """A provider's notification after its signature was verified: trusted data."""

    event_id: str
    order_no: str
    amount: Decimal
    currency: str
    kind: str  # a PaymentEvent.Kind value: "paid" or "refunded"
    timestamp: datetime


class PaymentProvider(ABC):
    name: str

    @abstractmethod
    def payment_start(self, *, order_no: str, token: str | None) -> str:
        """The URL the buyer is sent to in order to pay this order."""

    @abstractmethod
    def notification_verify(self, *, body: bytes, headers: Mapping[str, str]) -> PaymentNotification:
        """Check the signature of a webhook call and parse it.
        Raises InvalidSignature or MalformedNotification."""

    @abstractmethod
    def refund_start(self, *, order_no: str, amount: Decimal, currency: str) -> None:
        """Ask the provider to refund the order's payment; the provider confirms
        later with a `refunded` notification to the webhook."""
