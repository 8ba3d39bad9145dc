"""Repair the Redis gate against MariaDB, the record: rebuild a gate that was
lost, bring reservations of ended orders up to date, and correct a stock
counter that drifted.

Repairs move a live counter by a delta, so checkouts running at the same
moment are not lost. The whole reconciliation run (re-driving stuck orders,
persistence, expiry, then this) is apps.orders.services.reconcile."""

import logging
import time
from dataclasses import dataclass, field

from django.db import DatabaseError, transaction
from redis.exceptions import RedisError

from apps.catalog.models import Product
from apps.orders.models import Order

from . import selectors, services
from .reservations import Reservation
from .warmup import WarmBlocked, available_units, products_to_warm, stock_warm

logger = logging.getLogger(__name__)

# A reservation that is not an order this long after it lapsed is released.
ORPHAN_GRACE_SECONDS = 10 * 60


@dataclass
class GateRepairReport:
    rewarmed_after_restart: int = 0
    finished: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    rewarmed: list[str] = field(default_factory=list)
    drift_fixed: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def gates_repair(report: GateRepairReport, *, drift_settle_seconds: float = 1.0) -> None:
    """Repair every live product's gate, writing what was done into report."""
    for product in products_to_warm():
        # One product's trouble (a lock wait, Redis gone mid-run) must not
        # stop the others' repairs.
        try:
            _gate_repair(product, report, drift_settle_seconds)
        except (RedisError, DatabaseError) as exc:
            report.errors.append(f"{product.sku}: {type(exc).__name__}: {exc}")


def _gate_repair(product: Product, report: GateRepairReport, settle: float) -> None:
    stock, reservations = selectors.stock_gate_state(product_id=product.id)
    if stock is None:
        try:
            rebuilt, _ = stock_warm(product=product)
        except WarmBlocked as exc:
            report.errors.append(str(exc))
            return
        if rebuilt:
            report.rewarmed.append(product.sku)
        return
    _clear_ended_reservations(product, reservations, report)
    _release_held_of_refunded(product, report)
    drift = _stock_drift(product)
    if drift and settle:
        # A delivery between the two reads looks like drift for a moment; act
        # only on drift that holds still.
        time.sleep(settle)
        if _stock_drift(product) != drift:
            return
    if drift:
        services.stock_adjust(product_id=product.id, delta=drift)
        report.drift_fixed[product.sku] = drift
        logger.warning("stock drift on %s repaired by %+d", product.sku, drift)


def _clear_ended_reservations(product: Product, reservations: dict[str, Reservation], report: GateRepairReport) -> None:
    if not reservations:
        return
    now = time.time()
    statuses = dict(Order.objects.filter(order_no__in=list(reservations)).values_list("order_no", "status"))
    for order_no, reservation in reservations.items():
        status = statuses.get(order_no)
        if status == Order.Status.DELIVERED:
            services.stock_reservations_finish(reservations=[(product.id, order_no)])
            report.finished.append(order_no)
        elif status == Order.Status.NEEDS_ATTENTION:
            services.stock_reservations_hold(reservations=[(product.id, order_no)])
            report.finished.append(order_no)
        elif status in (Order.Status.REFUND_PENDING, Order.Status.REFUNDED):
            if services.stock_reservation_release(product_id=product.id, order_no=order_no):
                report.released.append(order_no)
        elif status in (Order.Status.EXPIRED, Order.Status.CANCELLED):
            # A reservation marked paid for an order still expired: a late
            # payment's transaction took the stock, then failed to commit.
            if _still_ended_unpaid(order_no) and _release(product.id, reservation):
                report.released.append(order_no)
        elif status is None and reservation.reserved_until + ORPHAN_GRACE_SECONDS < now:
            # Never became an order (its record was refused, or lost with a
            # worker's data) and long past its reservation: nobody can pay it.
            if services.stock_reservation_release_unpaid(product_id=product.id, order_no=order_no):
                report.released.append(order_no)
        elif status == Order.Status.PAID and not reservation.paid:
            services.stock_reservations_paid(reservations=[(product.id, order_no)])
            report.finished.append(order_no)


def _release(product_id: int, reservation: Reservation) -> bool:
    if reservation.paid:
        return services.stock_reservation_release(product_id=product_id, order_no=reservation.order_no)
    return services.stock_reservation_release_unpaid(product_id=product_id, order_no=reservation.order_no)


def _release_held_of_refunded(product: Product, report: GateRepairReport) -> None:
    """Buyers' shares still held for orders refunded meanwhile (the refund
    could not reach Redis) drop now."""
    held = selectors.stock_held_orders(product_id=product.id)
    if not held:
        return
    refunded = Order.objects.filter(
        order_no__in=held, status__in=(Order.Status.REFUND_PENDING, Order.Status.REFUNDED)
    ).values_list("order_no", flat=True)
    for order_no in refunded:
        if services.stock_buyers_uncount(product_id=product.id, order_no=order_no):
            report.released.append(order_no)


def _still_ended_unpaid(order_no: str) -> bool:
    """Re-read under the row lock, so a late payment that is committing right
    now is not mistaken for one that failed."""
    with transaction.atomic():
        return (
            Order.objects.select_for_update()
            .filter(order_no=order_no, status__in=(Order.Status.EXPIRED, Order.Status.CANCELLED))
            .exists()
        )


def _stock_drift(product: Product) -> int:
    """Expected minus actual stock. Redis is read before MariaDB so that a
    delivery in between can only make the expected figure look lower, never
    higher: a wrong reading never raises stock above the keys there are."""
    stock, reservations = selectors.stock_gate_state(product_id=product.id)
    if stock is None:
        return 0
    reserved = sum(r.quantity for r in reservations.values())
    # A stock number being lowered has left the gate already: its locking
    # read waits for that write's commit (available_units).
    with transaction.atomic(using="default"):
        expected = available_units(product=product) - reserved
    return expected - stock
