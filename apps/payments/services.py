"""Payments: turning a provider's notification into an order state change,
and asking providers to pay (sandbox). Refund requests: refunds.py."""

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from apps.core.errors import ShopError
from apps.orders.models import Order

# A module, not its names: it publishes this app's tasks, whose module imports this one.
from apps.orders.services import payment as order_payment

from .breaker import provider_call
from .exceptions import OrderNotPayable, StaleNotification, UnknownProvider
from .models import PaymentEvent
from .provider_payments import orders_with_started_payments, provider_payment_providers, provider_payment_record
from .providers import provider_get
from .providers.base import PaymentRequest, PaymentStart
from .providers.sandbox import SandboxProvider

logger = logging.getLogger(__name__)

# A late payment (after the reservation expired) is still taken: it is
# delivered if keys remain, otherwise refunded.
# A payment can be started while the order can still be paid in time.
PAYABLE_BY_METHOD = frozenset({Order.Status.QUEUED, Order.Status.AWAITING_PAYMENT})
SANDBOX_PAYABLE = frozenset({Order.Status.QUEUED, Order.Status.AWAITING_PAYMENT, Order.Status.EXPIRED})


def payment_notification_process(
    *, provider_name: str, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
) -> Order:
    """Verify a webhook call and apply it. Not atomic itself: the order service
    it calls is the durable transaction that records the event and the state
    change together, so when this returns the change is committed. Raises
    UnknownProvider, InvalidSignature, MalformedNotification,
    StaleNotification, NotificationIgnored (genuine, nothing to do: answer
    2xx), and the order service's errors (OrderNotFound, PaymentMismatch,
    RefundMismatch, EventIdReused)."""
    provider = provider_get(name=provider_name)
    notification = provider.notification_verify(body=body, headers=headers, query=query)
    age = abs((timezone.now() - notification.timestamp).total_seconds())
    if age > settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS:
        raise StaleNotification()
    if notification.kind == PaymentEvent.Kind.PAID:
        return order_payment.order_mark_paid(
            order_no=notification.order_no,
            provider=provider.name,
            event_id=notification.event_id,
            amount=notification.amount,
            currency=notification.currency,
        )
    return order_payment.order_mark_refunded(
        order_no=notification.order_no,
        provider=provider.name,
        event_id=notification.event_id,
        amount=notification.amount,
        currency=notification.currency,
        payment_event_id=notification.payment_event_id,
    )


def payment_query_apply(*, provider_name: str, order_no: str) -> Order | None:
    """An active query: ask the provider whether the order was paid (its
    notification may have been lost) and apply a paid answer through the
    same dedupe path a notification takes (the event id is the provider's
    trade number, so the notification arriving after all acts no more).
    Returns the order when the provider says paid, None when not (yet).
    Raises UnknownProvider, PaymentUnavailable while the provider is failing,
    and order_mark_paid's errors (PaymentMismatch, OrderNotFound, ...)."""
    provider = provider_get(name=provider_name)
    notification = provider_call(provider, "payment_query", order_no=order_no)
    if notification is None or notification.kind != PaymentEvent.Kind.PAID or notification.order_no != order_no:
        return None
    return order_payment.order_mark_paid(
        order_no=order_no,
        provider=provider.name,
        event_id=notification.event_id,
        amount=notification.amount,
        currency=notification.currency,
    )


def payments_query_started(*, order_no: str) -> Order | None:
    """Ask every enabled provider the order's payment was started with whether
    it was paid (the buyer pressed "I have paid", or the order is about to
    expire). Returns the order once one says paid, else None. Raises
    PaymentUnavailable while a provider is failing."""
    for name in provider_payment_providers(order_no=order_no):
        if name in settings.PAYMENT_PROVIDERS:
            order = payment_query_apply(provider_name=name, order_no=order_no)
            if order is not None:
                return order
    return None


def payments_query_expiring(*, now: datetime | None = None, limit: int = 200) -> int:
    """Ask the providers about unpaid orders whose reservation ends within
    PAYMENT_QUERY_AHEAD_SECONDS or ended less than PAYMENT_QUERY_GRACE_SECONDS
    ago (expiry waits that long for them), with a payment started. A provider
    that cannot answer is logged; its order expires after the grace all the
    same, and a payment that arrives later is a late payment. Returns how many
    were found paid."""
    now = now or timezone.now()
    expiring = (
        Order.objects.filter(
            status=Order.Status.AWAITING_PAYMENT,
            reserved_until__lte=now + timedelta(seconds=settings.PAYMENT_QUERY_AHEAD_SECONDS),
            reserved_until__gt=now - timedelta(seconds=settings.PAYMENT_QUERY_GRACE_SECONDS),
            order_no__in=orders_with_started_payments(),
        )
        .order_by("reserved_until")
        .values_list("order_no", flat=True)[:limit]
    )
    found = 0
    for order_no in expiring:
        try:
            found += payments_query_started(order_no=order_no) is not None
        except ShopError as error:
            logger.warning("order %s: its provider could not say whether it was paid: %s", order_no, error.code)
    return found


def sandbox_payment_make(*, snapshot: Mapping) -> None:
    """The buyer paid in the sandbox: it notifies the webhook, asynchronously
    and with retries, as a real provider does. `snapshot` is the order as the
    token holder sees it (order_snapshot_get). Raises UnknownProvider when the
    sandbox is not enabled, OrderNotPayable, and PaymentUnavailable while the
    sandbox is failing (the order stays as it is)."""
    sandbox = provider_get(name=SandboxProvider.name)
    if snapshot["status"] not in SANDBOX_PAYABLE:
        raise OrderNotPayable()
    provider_call(
        sandbox,
        "payment_make",
        order_no=snapshot["order_no"],
        amount=Decimal(str(snapshot["amount"])),
        currency=snapshot["currency"],
    )


def payment_start(*, snapshot: Mapping, method: str, token: str | None, device: str, client_ip: str) -> PaymentStart:
    """Open a payment of the order (`snapshot`: as its token holder sees it,
    order_snapshot_get) with the method the buyer chose. Raises
    UnknownProvider for a method no enabled provider offers, and
    PaymentUnavailable while its provider is failing."""
    provider = provider_get(name=method.partition(".")[0])
    if method not in provider.methods():
        raise UnknownProvider()
    order_no = snapshot["order_no"]
    site = settings.SITE_URL.rstrip("/")
    deadline = snapshot.get("pay_deadline")
    request = PaymentRequest(
        order_no=order_no,
        amount=Decimal(str(snapshot["amount"])),
        currency=snapshot["currency"],
        subject=snapshot["title"],
        method=method,
        deadline=datetime.fromisoformat(deadline) if deadline else timezone.now(),
        device=device,
        client_ip=client_ip,
        return_url=site + reverse("orders:detail", kwargs={"order_no": order_no}),
        notify_url=site + reverse("payments:webhook", kwargs={"provider": provider.name}),
    )
    start = provider_call(provider, "payment_start", request=request)
    # Remembered, so the shop asks this provider before the order expires
    # (active query) and closes the payment when the order ends unpaid.
    provider_payment_record(order_no=order_no, provider=provider.name, reference=start.reference or order_no)
    if provider.pages_on_this_site and token and start.pay_url:
        start = PaymentStart(pay_url=f"{start.pay_url}?{urlencode({'token': token})}", qr_code=start.qr_code)
    return start
