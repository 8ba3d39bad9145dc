"""Payment: a verified provider notification marks an order paid (or
refunded), once; an order that cannot be delivered goes to refund_pending and
its refund is asked of the provider after commit."""

import logging
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from apps.payments.models import PaymentEvent
from apps.payments.tasks import refund_order_task
from apps.stock import selectors as gate
from apps.stock import services as stock
from apps.stock.reservations import Reservation

from ..exceptions import OrderNotFound, OrderPending, PaymentMismatch
from ..identity import order_number_product_id
from ..models import Order

# A module, not its names: fulfilment and the tasks module import each other.
from . import fulfilment

logger = logging.getLogger(__name__)

Status = Order.Status


@transaction.atomic(durable=True)
def order_mark_paid(*, order_no: str, provider: str, event_id: str, amount: Decimal, currency: str) -> Order:
    """Apply a verified payment notification, once. The event id is recorded
    in the same transaction as the state change, so a notification delivered
    again (also concurrently) returns the order unchanged.

    Raises OrderPending while the order is still only a reservation in Redis
    (the provider retries: a 5xx answer), OrderNotFound for an order that
    does not exist (a reservation lost before persistence can never be paid),
    and PaymentMismatch."""
    order = Order.objects.select_for_update().filter(order_no=order_no).first()
    if order is None:
        raise OrderPending() if _reservation_pending(order_no) else OrderNotFound()
    if PaymentEvent.objects.filter(provider=provider, event_id=event_id).exists():
        return order
    if Decimal(amount) != order.amount or currency != order.currency:
        raise PaymentMismatch(expected_amount=str(order.amount), expected_currency=order.currency)
    try:
        with transaction.atomic():
            PaymentEvent.objects.create(
                provider=provider,
                event_id=event_id,
                kind=PaymentEvent.Kind.PAID,
                order=order,
                amount=amount,
                currency=currency,
            )
    except IntegrityError:
        return order  # another delivery of this event won the race

    if order.status == Status.AWAITING_PAYMENT:
        _order_to_paid(order)
    elif order.status in (Status.EXPIRED, Status.CANCELLED):
        _order_late_payment(order)
    else:
        # A second, different payment for an order already paid: keep the
        # first, and make the extra money visible to an operator.
        note = f"extra payment {provider}:{event_id} received while {order.status}; refund it"
        order.attention_reason = (order.attention_reason + "\n" + note).strip()
        order.save(update_fields=["attention_reason", "updated_at"])
        logger.warning("order %s: %s", order.order_no, note)
    return order


def _order_to_paid(order: Order) -> None:
    order.status = Status.PAID
    order.paid_at = timezone.now()
    order.save(update_fields=["status", "paid_at", "updated_at"])
    fulfilment.fulfilment_request_on_commit(order_id=order.id)
    transaction.on_commit(lambda: _gate_paid_rollback_unsafe(order))


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
    if stock remains, else refund.

    A Redis error propagates: the transaction rolls back and the provider
    retries, rather than the order taking keys the gate still offers others."""
    taken = stock.stock_rereserve(product_id=order.product_id, reservation=Reservation.from_order(order, paid=True))
    if taken == 0:
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


@transaction.atomic(durable=True)
def order_mark_refunded(*, order_no: str, provider: str, event_id: str) -> Order:
    """Apply a verified refund notification, once."""
    order = Order.objects.select_for_update().filter(order_no=order_no).first()
    if order is None:
        raise OrderNotFound()
    if PaymentEvent.objects.filter(provider=provider, event_id=event_id).exists():
        return order
    PaymentEvent.objects.create(
        provider=provider,
        event_id=event_id,
        kind=PaymentEvent.Kind.REFUNDED,
        order=order,
        amount=order.amount,
        currency=order.currency,
    )
    if order.status == Status.REFUND_PENDING:
        order.status = Status.REFUNDED
        order.save(update_fields=["status", "updated_at"])
    return order


@transaction.atomic(durable=True)
def order_refund_start(*, order_ids: list[int], reason: str) -> int:
    """Refund paid orders that cannot be delivered (needs_attention or paid);
    the operator's action. Returns how many."""
    orders = list(
        Order.objects.select_for_update().filter(id__in=order_ids, status__in=[Status.NEEDS_ATTENTION, Status.PAID])
    )
    for order in orders:
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
