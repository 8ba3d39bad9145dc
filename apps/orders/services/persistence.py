"""Persistence: reservations the checkout script queued in Redis become
`awaiting_payment` orders in MariaDB within milliseconds.

The first checkout of a burst publishes a persist task for its product (the
checkout script tells it so by setting a mark; order_persist_request_rollback_unsafe);
the checkouts after it publish nothing while that task waits, because it
drains their reservations too: a crowd costs a handful of tasks, not one per
order. Beat's once-a-second drain of every product stays as the safety net
for a publish that failed or a task lost with its broker."""

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db import DataError, IntegrityError, transaction

from apps.core.db_locks import persist_fence
from apps.coupons.models import Coupon

# The module, not its names: the persist task calls back into this one.
from apps.orders import tasks
from apps.stock import selectors as gate
from apps.stock import services as stock
from apps.stock.reservations import Reservation

from ..models import Order
from ..pricing import reservation_price

logger = logging.getLogger(__name__)

# What a record the database (or the reservation's own reading) refuses raises.
_REFUSED = (IntegrityError, DataError, KeyError, TypeError, ValueError)


def order_persist_reservations(*, product_id: int, reservations: list[Reservation]) -> int:
    """Write reservations as `awaiting_payment` orders, idempotent on the
    order number (one persisted twice stays one order). Returns how many rows
    were new."""
    orders = [_order_from_reservation(product_id=product_id, reservation=r) for r in reservations]
    with transaction.atomic(durable=True):
        _coupons_gone_unset(orders)
        existing = set(
            Order.objects.filter(order_no__in=[o.order_no for o in orders]).values_list("order_no", flat=True)
        )
        new = [o for o in orders if o.order_no not in existing]
        # Plain INSERT: IGNORE would turn a bad value into a silent truncation.
        Order.objects.bulk_create(new)
    return len(new)


def _coupons_gone_unset(orders: list[Order]) -> None:
    """A reservation whose coupon row was deleted since checkout still
    becomes its order (a 202 is a promise): without the link, with the code
    and discount it was placed with. A deletion after this look makes the
    insert fail on the foreign key; the one-by-one retry looks again."""
    coupon_ids = {o.coupon_id for o in orders if o.coupon_id is not None}
    if not coupon_ids:
        return
    present = set(Coupon.objects.filter(id__in=coupon_ids).values_list("id", flat=True))
    for order in orders:
        if order.coupon_id is not None and order.coupon_id not in present:
            logger.warning("order %s: coupon %s was deleted; kept as its code", order.order_no, order.coupon_code)
            order.coupon_id = None


def _order_from_reservation(*, product_id: int, reservation: Reservation) -> Order:
    price = reservation_price(reservation)
    return Order(
        order_no=reservation.order_no,
        product_id=product_id,
        buyer_email=reservation.email,
        quantity=reservation.quantity,
        unit_price=reservation.price,
        amount=price.amount,
        coupon_id=reservation.coupon_id,
        coupon_code=reservation.coupon_code,
        discount=price.discount,
        input_values=reservation.input_values,
        currency=reservation.currency,
        status=Order.Status.AWAITING_PAYMENT,
        buyer_identities=" ".join(reservation.buyers),
        access_token_hash=reservation.token_hash,
        reserved_until=datetime.fromtimestamp(reservation.reserved_until, tz=UTC),
        language=reservation.language or settings.LANGUAGE_CODE,
    )


def order_persist_queued(*, product_ids: list[int] | None = None) -> int:
    """Move every warmed product's queued reservations into MariaDB (beat's
    safety net). Safe to run anywhere, any number of times at once: one worker
    per product drains (the others skip it), and an entry leaves the queue
    only after commit, so a worker killed half-way leaves it for the next."""
    total = 0
    for product_id in product_ids if product_ids is not None else gate.stock_warmed_product_ids():
        total += _drain_while_queued(product_id=product_id, wait=0)
    return total


def order_persist_request_rollback_unsafe(*, product_id: int) -> None:
    """Publish a persist task for the product now (checkout opens no
    transaction). Called when the checkout script set the product's persist
    mark. A publish that fails leaves the mark to expire
    (PERSIST_REQUEST_TTL_SECONDS): while the broker is down, one checkout per
    product per TTL waits for the publish to fail, not every checkout. The
    reservations wait in Redis meanwhile (on disk: deploy/redis/redis.conf)
    for the next task or beat's drain."""
    try:
        tasks.persist_reservations_task.delay(product_id)
    except Exception:
        logger.exception("persist task for product %s could not be queued; the next will drain it", product_id)


def order_persist_requested(*, product_id: int) -> int:
    """A persist task's work: clear the product's mark (a reservation made
    from now on asks for a new task), then drain its queue.

    When another worker holds the product's fence, this one waits for it (up
    to PERSIST_FENCE_WAIT_SECONDS): a drainer looks at the queue again after
    letting go (below), but a stock rebuild, which holds the same fence, does
    not, and leaving then would leave the burst to beat. Returns how many
    entries this task drained."""
    stock.stock_persist_request_clear(product_id=product_id)
    return _drain_while_queued(product_id=product_id, wait=settings.PERSIST_FENCE_WAIT_SECONDS)


def _drain_while_queued(*, product_id: int, wait: float) -> int:
    """Drain the product's queue under its fence; skip it when another worker
    holds the fence past `wait` seconds. The holder looks at the queue again after letting go:
    a reservation queued after its last look was seen by no one else (they
    found the fence held and left), so it goes round again for it."""
    total = 0
    while True:
        with persist_fence(product_id=product_id, timeout=wait) as held:
            if not held:
                return total
            total += order_persist_queue_drain(product_id=product_id)
        if not gate.stock_queue_length(product_id=product_id):
            return total


def order_persist_queue_drain(*, product_id: int) -> int:
    """Persist one product's queued reservations. Caller holds its persist fence."""
    total = 0
    while entries := gate.stock_queue_peek(product_id=product_id, count=settings.PERSIST_BATCH_SIZE):
        try:
            reservations = [Reservation.from_json(entry) for entry in entries]
            order_persist_reservations(product_id=product_id, reservations=reservations)
        except _REFUSED:
            _persist_one_by_one(product_id=product_id, entries=entries)
        stock.stock_queue_drop(product_id=product_id, count=len(entries))
        total += len(entries)
    return total


def _persist_one_by_one(*, product_id: int, entries: list[bytes]) -> None:
    """A batch the database refused: write its reservations one at a time, so
    one bad record cannot block the queue behind it. A record refused on its
    own is logged and dropped; its reservation then expires like an unpaid
    one. A database that is down raises OperationalError, which is not caught:
    the batch stays queued for the next run."""
    for entry in entries:
        order_no = "(unreadable)"
        try:
            reservation = Reservation.from_json(entry)
            order_no = reservation.order_no
            order_persist_reservations(product_id=product_id, reservations=[reservation])
        except _REFUSED as exc:
            logger.error(
                "reservation %s of product %s could not be persisted and was dropped: %s",
                order_no,
                product_id,
                type(exc).__name__,
            )
