"""Payment: a verified provider notification marks an order paid (or
refunded), once; an order that cannot be delivered goes to refund_pending and
its refund is asked of the provider after commit. A refund after delivery
revokes the keys; a second payment flags the order `overpaid` and is refunded;
money that does not match is refused and logged as an anomaly."""

import logging
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from redis.exceptions import RedisError

from apps.cardkeys.services import cardkeys_revoke_for_order
from apps.core import metrics
from apps.coupons.services import coupon_buyer, coupon_use_retake, coupon_use_return_rollback_unsafe

# A module, not its names: its tasks reach back into the order services.
from apps.notifications import services as notifications
from apps.payments.models import PaymentEvent
from apps.payments.tasks import refund_order_task, refund_payment_event_task
from apps.stock import selectors as gate
from apps.stock import services as stock
from apps.stock.reservations import Reservation

from ..exceptions import EventIdReused, OrderNotFound, OrderPending, PaymentMismatch, RefundMismatch
from ..identity import order_number_product_id
from ..models import Order
from ..status_records import order_status_records_drop_on_commit

# A module, not its names: fulfilment and the tasks module import each other.
from . import fulfilment

logger = logging.getLogger(__name__)

Status = Order.Status


@transaction.atomic(durable=True)
def order_mark_paid(*, order_no: str, provider: str, event_id: str, amount: Decimal, currency: str) -> Order:
    """Apply a verified payment notification, once. The event id is recorded
    in the same transaction as the state change, so a notification delivered
    again (also concurrently) returns the order unchanged.

    A second payment (another event id) never delivers again: the order is
    flagged `overpaid` and the extra payment is refunded through the provider
    that took it. A payment after the order's refund is recorded and delivers
    nothing.

    Raises OrderPending while the order is still only a reservation in Redis
    (the provider retries: a 5xx answer), OrderNotFound for an order that
    does not exist (a reservation lost before persistence can never be paid),
    PaymentMismatch and EventIdReused (both logged as anomalies)."""
    order = Order.objects.select_for_update().filter(order_no=order_no).first()
    if order is None:
        raise OrderPending() if _reservation_pending(order_no) else OrderNotFound()
    if _event_recorded(order=order, provider=provider, event_id=event_id):
        return order
    if Decimal(amount) != order.amount or currency != order.currency:
        _anomaly(
            PaymentMismatch.code,
            order,
            f"payment {provider}:{event_id} of {amount} {currency}, order is {order.amount} {order.currency}",
        )
        raise PaymentMismatch(expected_amount=str(order.amount), expected_currency=order.currency)
    event = _event_create(
        order=order, provider=provider, event_id=event_id, kind=PaymentEvent.Kind.PAID, amount=amount, currency=currency
    )
    if event is None:
        return order  # another delivery of this event won the race

    if order.status == Status.AWAITING_PAYMENT:
        _order_to_paid(order)
    elif order.status in (Status.EXPIRED, Status.CANCELLED):
        _order_late_payment(order)
    elif order.status == Status.REFUNDED and _payment_already_refunded(order=order, event=event):
        # The provider's refund overtook this payment's own notification: the
        # money is back with the buyer already. Recorded, nothing delivered.
        _attention_note(
            order, f"payment {provider}:{event_id} arrived after the refund that returned it; not delivered"
        )
        order.save(update_fields=["attention_reason", "updated_at"])
    else:
        _order_overpaid(order=order, event=event)
    return order


def _event_recorded(*, order: Order, provider: str, event_id: str) -> bool:
    """Is this event already applied to the order (a repeat)? Raises
    EventIdReused, logged, when it was recorded for another order."""
    # A locking read: it sees a row another transaction committed after ours began.
    recorded = PaymentEvent.objects.select_for_update().filter(provider=provider, event_id=event_id).first()
    if recorded is None:
        return False
    if recorded.order_id != order.id:
        _anomaly(EventIdReused.code, order, f"event {provider}:{event_id} is recorded for order #{recorded.order_id}")
        raise EventIdReused()
    return True


def _event_create(*, order: Order, **fields) -> PaymentEvent | None:
    """Record the event; None when a concurrent delivery of it won the race.
    Raises EventIdReused when the winner recorded it for another order."""
    try:
        with transaction.atomic():
            return PaymentEvent.objects.create(order=order, **fields)
    except IntegrityError:
        _event_recorded(order=order, provider=fields["provider"], event_id=fields["event_id"])
        return None


def _anomaly(kind: str, order: Order, what: str) -> None:
    """A refused notification that no honest provider sends: a log line for
    the operator and a metric for the alert."""
    logger.warning("payment anomaly %s: order %s: %s", kind, order.order_no, what)
    metrics.payment_anomaly(kind=kind)


def _attention_note(order: Order, note: str) -> None:
    order.attention_reason = (order.attention_reason + "\n" + note).strip()
    logger.warning("order %s: %s", order.order_no, note)


def _payment_already_refunded(*, order: Order, event: PaymentEvent) -> bool:
    """For a refunded order: is `event` the very payment its refund returned
    (the refund named it, or the order had no other payment to refund)?"""
    refunds = PaymentEvent.objects.filter(order=order, kind=PaymentEvent.Kind.REFUNDED)
    if refunds.filter(provider=event.provider, refunds_event_id=event.event_id).exists():
        return True
    other_payments = PaymentEvent.objects.filter(order=order, kind=PaymentEvent.Kind.PAID).exclude(pk=event.pk)
    return not other_payments.exists() and not refunds.exclude(refunds_event_id="").exists()


def _order_overpaid(*, order: Order, event: PaymentEvent) -> None:
    """Money beyond the order's price: keep the first payment, flag the order
    and refund this one through the provider that took it, after commit."""
    order.overpaid = True
    _attention_note(
        order,
        f"extra payment {event.provider}:{event.event_id} ({event.amount} {event.currency})"
        f" received while {order.status}; refund asked of {event.provider}",
    )
    order.save(update_fields=["overpaid", "attention_reason", "updated_at"])
    transaction.on_commit(metrics.order_overpaid)
    refund_payment_event_task.delay_on_commit(event.pk)


def _order_to_paid(order: Order) -> None:
    order.status = Status.PAID
    order.paid_at = timezone.now()
    order.save(update_fields=["status", "paid_at", "updated_at"])
    order_status_records_drop_on_commit(order_nos=[order.order_no])
    fulfilment.fulfilment_request_on_commit(order_id=order.id)
    transaction.on_commit(lambda: _gate_paid_rollback_unsafe(order))
    # Every paid order, whatever its delivery, tells the merchant; after the
    # fulfilment request, in a task of its own, never holding it up.
    notifications.notifications_order_paid_on_commit(order_id=order.id)


def _gate_paid_rollback_unsafe(order: Order) -> None:
    """The buyers' unpaid slots free up. If Redis cannot be reached,
    reconciliation does it later."""
    try:
        stock.stock_reservations_paid(reservations=[(order.product_id, order.order_no)])
    except RedisError:
        logger.warning("reservation of order %s not marked paid in Redis; reconcile will", order.order_no)


def _reservation_pending(order_no: str) -> bool:
    """Is this order number still a reservation waiting to be persisted? When
    Redis cannot tell, answer yes: a retried notification is cheap, a payment
    refused for good is not."""
    product_id = order_number_product_id(order_no)
    if product_id is None:
        return False
    try:
        return gate.stock_reservation_get(product_id=product_id, order_no=order_no) is not None
    except RedisError:
        return True


def _order_late_payment(order: Order) -> None:
    """Paid after its reservation expired (or the buyer cancelled it): deliver
    if its coupon's use (given back at expiry) can be taken again within the
    caps and stock remains, else refund.

    A Redis error propagates: the transaction rolls back and the provider
    retries, rather than the order taking keys the gate still offers others.
    A use taken before such a rollback belongs to an order that does not
    count: reconciliation gives it back (coupon_claims_reconcile)."""
    if order.coupon_id is not None and not coupon_use_retake(
        coupon_id=order.coupon_id, order_no=order.order_no, buyer=coupon_buyer(order.buyer_identity_list())
    ):
        order_to_refund_pending(order=order, reason="paid after the reservation expired; coupon used up meanwhile")
        return
    taken = stock.stock_rereserve(product_id=order.product_id, reservation=Reservation.from_order(order, paid=True))
    if taken == 0:
        # Refunding gives the coupon use taken above back too.
        order_to_refund_pending(order=order, reason="paid after the reservation expired; sold out meanwhile")
        return
    # taken == -1: the gate is not warmed; its rebuild counts this paid order.
    _order_to_paid(order)


def order_to_refund_pending(*, order: Order, reason: str) -> None:
    """Caller holds the order's row lock in a transaction. The refund is
    asked of the provider, and the stock returned, after commit."""
    order.status = Status.REFUND_PENDING
    order.paid_at = order.paid_at or timezone.now()
    order.attention_reason = reason
    order.save(update_fields=["status", "paid_at", "attention_reason", "updated_at"])
    order_status_records_drop_on_commit(order_nos=[order.order_no])
    refund_order_task.delay_on_commit(order.id)
    transaction.on_commit(lambda: _release_for_refund_rollback_unsafe(order))


def _release_for_refund_rollback_unsafe(order: Order) -> None:
    """Return a refunded order's stock and its buyers' shares: through its
    reservation, or, for an order that needed attention (its reservation
    ended at the shortfall), through the shares held for it. Both act once."""
    try:
        stock.stock_reservation_release(product_id=order.product_id, order_no=order.order_no)
        stock.stock_buyers_uncount(product_id=order.product_id, order_no=order.order_no)
    except RedisError:
        logger.warning("order %s refunded; Redis unreachable, reconcile releases its share", order.order_no)
    coupon_use_return_rollback_unsafe(order=order)


@transaction.atomic(durable=True)
def order_mark_refunded(
    *, order_no: str, provider: str, event_id: str, amount: Decimal, currency: str, payment_event_id: str = ""
) -> Order:
    """Apply a verified refund notification (full or partial), once.

    The refund of an extra payment (named by `payment_event_id`) leaves the
    order as it is. Any other refund ends the order `refunded`: a delivered
    order's keys are revoked (the alert counts it); an order not yet
    delivered returns its stock. Raises OrderNotFound, and RefundMismatch and
    EventIdReused (both logged as anomalies)."""
    order = Order.objects.select_for_update().filter(order_no=order_no).first()
    if order is None:
        raise OrderNotFound()
    if _event_recorded(order=order, provider=provider, event_id=event_id):
        return order
    refundable = _refundable_amount(order)
    if currency != order.currency or not Decimal(0) < Decimal(amount) <= refundable:
        _anomaly(
            RefundMismatch.code,
            order,
            f"refund {provider}:{event_id} of {amount} {currency}, refundable {refundable} {order.currency}",
        )
        raise RefundMismatch(refundable_amount=str(refundable), expected_currency=order.currency)
    event = _event_create(
        order=order,
        provider=provider,
        event_id=event_id,
        kind=PaymentEvent.Kind.REFUNDED,
        amount=amount,
        currency=currency,
        refunds_event_id=payment_event_id,
    )
    if event is None:
        return order
    if _is_extra_payment(order=order, provider=provider, payment_event_id=payment_event_id):
        _attention_note(order, f"extra payment {provider}:{payment_event_id} refunded ({amount} {currency})")
        order.save(update_fields=["attention_reason", "updated_at"])
    elif order.status != Status.REFUNDED:
        _order_to_refunded(order=order, note=f"refunded by {provider}:{event_id} ({amount} {currency})")
    return order


def _refundable_amount(order: Order) -> Decimal:
    """What may still be refunded: the payments recorded less the refunds, or
    the order's price while no payment is recorded (a provider's refund can
    overtake the payment's own notification)."""
    totals = {
        row["kind"]: row["total"]
        for row in PaymentEvent.objects.filter(order=order).values("kind").annotate(total=Sum("amount"))
    }
    paid = totals.get(PaymentEvent.Kind.PAID) or order.amount
    return paid - (totals.get(PaymentEvent.Kind.REFUNDED) or Decimal(0))


def _is_extra_payment(*, order: Order, provider: str, payment_event_id: str) -> bool:
    """Does the refund name a payment of the order other than its first?"""
    if not payment_event_id:
        return False
    payments = PaymentEvent.objects.filter(order=order, kind=PaymentEvent.Kind.PAID).order_by("id")
    named = payments.filter(provider=provider, event_id=payment_event_id).first()
    return named is not None and named.pk != payments.values_list("pk", flat=True).first()


def _order_to_refunded(*, order: Order, note: str) -> None:
    """Caller holds the order's row lock. Keys already handed out are revoked;
    stock an undelivered order still holds returns after commit."""
    delivered = order.status == Status.DELIVERED or order.delivered_at is not None
    order.status = Status.REFUNDED
    _attention_note(order, note)
    order.save(update_fields=["status", "attention_reason", "updated_at"])
    order_status_records_drop_on_commit(order_nos=[order.order_no])
    if delivered:
        cardkeys_revoke_for_order(order_id=order.id)
        transaction.on_commit(metrics.order_refunded_after_delivery)
        # A refund gives the coupon's use back (once: it is a claim by order number).
        transaction.on_commit(lambda: coupon_use_return_rollback_unsafe(order=order))
    else:
        transaction.on_commit(lambda: _release_for_refund_rollback_unsafe(order))


# What an operator may refund: paid orders, delivered or not.
REFUNDABLE_BY_OPERATOR = (Status.NEEDS_ATTENTION, Status.PAID, Status.DELIVERED)


@transaction.atomic(durable=True)
def order_refund_start(*, order_ids: list[int], reason: str) -> int:
    """Refund paid orders (needs_attention, paid, or delivered); the
    operator's action, through the provider that took the payment. They wait
    in refund_pending for the provider's notification; a delivered order's
    keys are revoked then. Returns how many."""
    orders = list(Order.objects.select_for_update().filter(id__in=order_ids, status__in=REFUNDABLE_BY_OPERATOR))
    for order in orders:
        if order.status == Status.DELIVERED:
            # Its keys are with the buyer: no stock returns, they are revoked on the refund.
            order.status = Status.REFUND_PENDING
            order.attention_reason = reason
            order.save(update_fields=["status", "attention_reason", "updated_at"])
            order_status_records_drop_on_commit(order_nos=[order.order_no])
            refund_order_task.delay_on_commit(order.id)
            transaction.on_commit(lambda order=order: coupon_use_return_rollback_unsafe(order=order))
        else:
            order_to_refund_pending(order=order, reason=reason)
    return len(orders)


def refunds_redrive_stuck() -> list[str]:
    """Ask again for refunds pending longer than FULFIL_REDRIVE_AFTER_SECONDS
    (a request lost with its task, or out of retries). Asking twice is
    harmless: payment_refund_request acts once per order. Returns their
    numbers."""
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.FULFIL_REDRIVE_AFTER_SECONDS)
    stuck = list(
        Order.objects.filter(status=Status.REFUND_PENDING, updated_at__lt=cutoff).values_list("id", "order_no")
    )
    for order_id, _order_no in stuck:
        refund_order_task.delay_on_commit(order_id)
    return [order_no for _order_id, order_no in stuck]
