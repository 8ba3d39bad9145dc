"""Fulfilment: paid orders get their keys, in batches, in one MariaDB
transaction each; then their mails are handed to the mail queue.

A payment asks for fulfilment (fulfilment_request_on_commit); a worker then
delivers its order and goes on draining every paid order in batches until
none is left (fulfilment_run). Requests coalesce: while one fulfilment task
waits in the queue, later payments publish nothing, because that task drains
their orders too when it starts. So a crowd of payments costs a handful of
tasks, not one no-op task per order queueing behind the batch that served it.

Products not sold from the key pool: a reusable-key product's orders get its
one shared key (copied onto the order, no key row claimed) and take from its
stock number in the same transaction; a manual-delivery product's paid orders
are left to the merchant (services/manual_delivery.py), so every paid-order
query here leaves them out.
"""

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from apps.cardkeys.claims import cardkeys_claim, cardkeys_mark_sold
from apps.catalog.models import Product
from apps.core import metrics

# A module, not its names: its tasks reach back into the order services.
from apps.notifications import services as notifications

# The module, not its names: the tasks call back into this one.
from apps.orders import tasks
from apps.stock import services as stock
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import fulfilment_requested_key
from apps.stock.reservations import Reservation

from ..models import Order
from ..selectors import paid_orders_to_fulfil
from ..status_records import order_status_records_drop_on_commit, order_status_records_drop_rollback_unsafe

logger = logging.getLogger(__name__)

Status = Order.Status


@dataclass
class FulfilReport:
    delivered: list[str]
    short: list[str]

    def add(self, other: "FulfilReport") -> None:
        self.delivered += other.delivered
        self.short += other.short


def fulfilment_request_on_commit(*, order_id: int | None = None) -> None:
    """After the current transaction commits (at once outside one), publish a
    fulfilment task for a paid order, unless one is already queued and not
    yet started: that one will serve this order.

    The flag marking "one is queued" is cleared by the task as it starts,
    before it looks for paid orders, so an order paid before the clearing is
    seen by that task and one paid after it publishes anew. The flag expires
    (FULFIL_REQUEST_TTL_SECONDS), so a task lost with its worker delays later
    payments by at most that long; reconciliation re-drives its own orders.
    Without Redis to ask, it publishes."""
    transaction.on_commit(lambda: _fulfilment_request_rollback_unsafe(order_id))


def _fulfilment_request_rollback_unsafe(order_id: int | None) -> None:
    key = fulfilment_requested_key()
    try:
        first = stock_redis().set(key, order_id or 0, nx=True, ex=settings.FULFIL_REQUEST_TTL_SECONDS)
    except RedisError:
        first = True
    if not first:
        return
    try:
        tasks.fulfil_order_task.delay(order_id)
    except Exception:
        # Not queued: let the next payment publish; reconcile re-drives this one.
        logger.exception("fulfilment of order %s could not be queued; reconcile will re-drive it", order_id)
        _fulfilment_flag_clear()


def _fulfilment_flag_clear() -> None:
    try:
        stock_redis().delete(fulfilment_requested_key())
    except RedisError:
        pass  # it expires


def fulfilment_redrive_stuck() -> list[str]:
    """Re-drive orders paid longer than FULFIL_REDRIVE_AFTER_SECONDS ago and
    still undelivered (their task was lost, or out of retries). One task
    serves them all (it drains every paid order); it is published directly,
    not through the coalescing request: the mark of a lost task may be what
    left them stuck. Returns their numbers."""
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.FULFIL_REDRIVE_AFTER_SECONDS)
    stuck = list(paid_orders_to_fulfil().filter(paid_at__lt=cutoff).order_by("id").values_list("id", "order_no"))
    if stuck:
        tasks.fulfil_order_task.delay_on_commit(stuck[0][0])
    return [order_no for _order_id, order_no in stuck]


def fulfilment_run(*, order_id: int | None, seconds: float | None = None) -> FulfilReport:
    """A fulfilment task's work: deliver its order, then every paid order in
    batches until none is left. Batches skip orders another worker holds, so
    two workers draining at once take disjoint batches; a full batch asks for
    a second worker (a coalesced request, so at most one waits in the queue).
    When only held orders remain, it waits for the lowest one: it may be held
    by a duplicate payment notification being turned away, not by a worker
    that will deliver it. After `seconds` (FULFIL_RUN_SECONDS) with work left,
    it hands over to a fresh task: the worker's process also serves
    persistence and mail, which must not wait behind a long drain."""
    _fulfilment_flag_clear()
    report = _fulfil_isolating_failures(order_id=order_id) if order_id else FulfilReport(delivered=[], short=[])
    deadline = time.monotonic() + (seconds if seconds is not None else settings.FULFIL_RUN_SECONDS)
    while time.monotonic() < deadline:
        batch = _fulfil_isolating_failures(order_id=None)
        served = len(batch.delivered) + len(batch.short)
        if served >= settings.FULFIL_BATCH_SIZE:
            _fulfilment_request_rollback_unsafe(None)  # no transaction is open between batches
        elif served == 0:
            held = paid_orders_to_fulfil().order_by("id").values_list("id", flat=True).first()
            if held is None:
                return report
            batch = _fulfil_isolating_failures(order_id=held)
        report.add(batch)
    if paid_orders_to_fulfil().exists():
        _fulfilment_request_rollback_unsafe(None)
    return report


def _fulfil_isolating_failures(*, order_id: int | None) -> FulfilReport:
    """One batch (with the given order first); if it fails for a reason other
    than the database itself (which the task retries with backoff), its
    orders are served one by one, so one order that cannot be fulfilled fails
    alone, visibly (needs_attention with the error), instead of failing every
    batch it would be the first of, or every task re-driven for it."""
    try:
        return order_fulfil(order_id=order_id)
    except OperationalError:
        raise
    except Exception:
        logger.exception("a fulfilment batch failed; serving its orders one by one")
    report = FulfilReport(delivered=[], short=[])
    lowest = paid_orders_to_fulfil().order_by("id").values_list("id", flat=True)
    ids = list(dict.fromkeys([*([order_id] if order_id else []), *lowest[: settings.FULFIL_BATCH_SIZE]]))
    for one_id in ids:
        try:
            report.add(order_fulfil(order_id=one_id, batch_size=1))
        except OperationalError:
            raise
        except Exception as exc:
            logger.exception("order id %s could not be fulfilled", one_id)
            failed = order_fulfilment_failed(order_id=one_id, reason=f"fulfilment failed: {type(exc).__name__}: {exc}")
            if failed:
                report.short.append(failed)
    return report


@transaction.atomic(durable=True)
def order_fulfilment_failed(*, order_id: int, reason: str) -> str | None:
    """A paid order whose fulfilment raises goes to needs_attention, where an
    operator sees it and can retry or refund. Returns its number, or None if it
    was no longer paid."""
    order = Order.objects.select_for_update().filter(id=order_id, status=Status.PAID).first()
    if order is None:
        return None
    order.status = Status.NEEDS_ATTENTION
    order.attention_reason = reason[:2000]
    order.save(update_fields=["status", "attention_reason", "updated_at"])
    transaction.on_commit(lambda: after_delivery_rollback_unsafe([], [order]))
    return order.order_no


def order_fulfil(*, order_id: int | None, batch_size: int | None = None) -> FulfilReport:
    """Deliver a paid order (none: just the batch), and other paid orders with
    it up to the batch size, in one transaction: lock the orders (skipping
    those another worker holds), claim their keys, mark the keys sold, mark
    the orders delivered.
    A delivered order is left alone, so running this twice changes nothing.
    An order whose keys run short goes to needs_attention, never partly filled."""
    batch_size = batch_size or settings.FULFIL_BATCH_SIZE
    delivered: list[Order] = []
    short: list[Order] = []
    with transaction.atomic(durable=True):
        orders = _orders_lock_for_fulfilment(order_id=order_id, batch_size=batch_size)
        by_product: dict[int, list[Order]] = {}
        for order in orders:
            by_product.setdefault(order.product_id, []).append(order)
        now = timezone.now()
        assignments: dict[int, list[int]] = {}
        kinds = dict(Product.objects.filter(id__in=list(by_product)).values_list("id", "delivery_kind"))
        for product_id in sorted(by_product):
            if kinds[product_id] == Product.Delivery.REUSABLE_KEY:
                served, unserved = _reusable_key_serve(product_id=product_id, orders=by_product.pop(product_id))
                delivered += served
                short += unserved
            elif kinds[product_id] == Product.Delivery.MANUAL:
                by_product.pop(product_id)  # the merchant's to deliver; left paid
        for product_id, product_orders in by_product.items():
            key_ids = cardkeys_claim(product_id=product_id, count=sum(o.quantity for o in product_orders))
            for order in product_orders:
                if len(key_ids) < order.quantity:
                    order.status = Status.NEEDS_ATTENTION
                    order.attention_reason = (
                        f"keys ran short at fulfilment: needed {order.quantity}, found {len(key_ids)} available"
                    )
                    order.save(update_fields=["status", "attention_reason", "updated_at"])
                    short.append(order)
                    continue
                assignments[order.id], key_ids = key_ids[: order.quantity], key_ids[order.quantity :]
                delivered.append(order)
        # One statement for the keys and one for the orders, however deep the batch.
        expected = sum(len(ids) for ids in assignments.values())
        if cardkeys_mark_sold(assignments=assignments) != expected:
            raise RuntimeError("a key claim lost a row it held")  # rolls the whole batch back
        if delivered:
            changed = Order.objects.filter(id__in=[o.id for o in delivered], status=Status.PAID).update(
                status=Status.DELIVERED, delivered_at=now, updated_at=now
            )
            if changed != len(delivered):
                raise RuntimeError("an order of the batch was no longer paid")  # rolls the whole batch back
            for order in delivered:
                order.status, order.delivered_at = Status.DELIVERED, now
        transaction.on_commit(lambda: after_delivery_rollback_unsafe(delivered, short))
    return FulfilReport(delivered=[o.order_no for o in delivered], short=[o.order_no for o in short])


def _reusable_key_serve(*, product_id: int, orders: list[Order]) -> tuple[list[Order], list[Order]]:
    """Orders of a reusable-key product (caller's transaction, order rows
    locked): each gets the product's key, copied as stored, and takes its
    quantity from the stock number, under the product row's lock (taken
    after the orders', as every writer here does). An order the number no
    longer covers (the merchant lowered it) goes to needs_attention, like
    one short of pool keys. Returns (delivered, short); the caller marks the
    delivered ones."""
    product = (
        Product.objects.select_for_update().only("id", "stock_quantity", "reusable_key_encrypted").get(id=product_id)
    )
    left = product.stock_quantity
    delivered: list[Order] = []
    short: list[Order] = []
    for order in orders:
        if not product.reusable_key_encrypted or left < order.quantity:
            order.status = Status.NEEDS_ATTENTION
            order.attention_reason = (
                "the product has no reusable key"
                if not product.reusable_key_encrypted
                else f"stock ran short at fulfilment: needed {order.quantity}, {left} left"
            )
            order.save(update_fields=["status", "attention_reason", "updated_at"])
            short.append(order)
            continue
        left -= order.quantity
        order.reusable_key_encrypted = product.reusable_key_encrypted
        delivered.append(order)
    if delivered:
        Order.objects.filter(id__in=[o.id for o in delivered], status=Status.PAID).update(
            reusable_key_encrypted=product.reusable_key_encrypted
        )
        Product.objects.filter(id=product_id).update(
            stock_quantity=F("stock_quantity") - (product.stock_quantity - left)
        )
    return delivered, short


def _orders_lock_for_fulfilment(*, order_id: int | None, batch_size: int) -> list[Order]:
    """The task's own order, waiting for its row lock, then up to the batch
    size of other paid orders that nobody holds. Waiting for the own order
    matters: its lock may be held by a duplicate payment notification being
    turned away, and skipping it then would leave it paid and undelivered.
    A second fulfilment of the same order waits, then finds it delivered.
    No deadlock: the only wait is the first lock taken."""
    paid = paid_orders_to_fulfil()
    first = list(paid.select_for_update().filter(id=order_id)) if order_id else []
    others = list(
        paid.select_for_update(skip_locked=True).exclude(id=order_id).order_by("id")[: max(batch_size - len(first), 0)]
    )
    return first + others


def after_delivery_rollback_unsafe(delivered: list[Order], short: list[Order]) -> None:
    """After a fulfilment commit, for the whole batch at once: one Redis round
    trip ends the reservations, one message queues the mails. Every path that
    delivers or parks an order (fulfilment, its failure, manual delivery) runs
    this after its commit. The orders' status records drop last: they live
    on the cache Redis, and if that cannot be reached the drop waits for its
    connect timeout (then logs); the reservations and the mails come first."""
    metrics.orders_fulfilled(delivered=delivered, short=short)
    _gate_update_rollback_unsafe(stock.stock_reservations_finish, delivered)
    # An order short of keys holds no keys, so it holds no stock either; the
    # counter itself is corrected by reconciliation, which sees the shortfall
    # as drift. Its buyers' shares stay held for a refund or a retry.
    _gate_update_rollback_unsafe(stock.stock_reservations_hold, short)
    for order in short:
        logger.error("order %s needs attention: %s", order.order_no, order.attention_reason)
    if delivered:
        try:
            tasks.send_order_keys_emails_task.delay([order.id for order in delivered])
        except Exception:  # the broker hiccuped: the keys are on the order pages anyway
            logger.exception("%d orders delivered; their emails could not be queued", len(delivered))
    # Keys left the pool: the merchant may need to restock (a task; it never raises here).
    notifications.notifications_stock_check_rollback_unsafe(product_ids=[o.product_id for o in delivered + short])
    order_status_records_drop_rollback_unsafe(order_nos=[o.order_no for o in delivered + short])


def _gate_update_rollback_unsafe(update, orders: list[Order]) -> None:
    """One round trip for the batch; if Redis cannot be reached, reconciliation
    brings these reservations up to date later."""
    try:
        update(reservations=[(o.product_id, o.order_no) for o in orders])
    except RedisError:
        logger.warning("%d reservations not updated in Redis; reconcile will", len(orders))


@transaction.atomic(durable=True)
def order_fulfilment_retry(*, order_ids: list[int]) -> int:
    """Send orders that needed attention (keys ran short) back to fulfilment,
    e.g. after the merchant uploaded more keys; the operator's action.
    Returns how many."""
    orders = list(
        Order.objects.select_for_update().filter(id__in=order_ids, status=Status.NEEDS_ATTENTION).order_by("id")
    )
    retried = 0
    for order in orders:
        # Its reservation ended at the shortfall: take gate stock again, or new
        # keys would be promised twice (to this order and to the next buyer).
        taken = stock.stock_rereserve_held(
            product_id=order.product_id, reservation=Reservation.from_order(order, paid=True)
        )
        if taken == 0:
            order.attention_reason += "\nretry refused: still not enough stock"
            order.save(update_fields=["attention_reason", "updated_at"])
            continue
        order.status = Status.PAID
        order.save(update_fields=["status", "updated_at"])
        order_status_records_drop_on_commit(order_nos=[order.order_no])
        fulfilment_request_on_commit(order_id=order.id)
        retried += 1
    return retried
