"""Keep the Redis gate in step with MariaDB, the record: warm a product's stock
before its sale (and after Redis lost its data), and repair drift.

The gate's stock of a product must equal its available keys minus the keys
reserved by orders that do not hold them yet. Warming writes that figure only
while the stock is unknown (checkout is paused then, so nothing races it);
reconciliation corrects a live counter by a delta, so checkouts running at the
same moment are not lost.
"""

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import RedisError

from apps.cardkeys.models import CardKey
from apps.catalog.models import Product
from apps.core import metrics
from apps.core.db_locks import persist_fence
from apps.orders.models import Order
from apps.orders.services import (
    COUNTED_STATUSES,
    HOLDING_STATUSES,
    order_buyers,
    order_persist_queue_drain,
    order_reservation_record,
)

from . import services as gate

logger = logging.getLogger(__name__)

# A reservation that is not an order this long after it lapsed is released.
ORPHAN_GRACE_SECONDS = 10 * 60


def available_keys(*, product_id: int) -> int:
    return CardKey.objects.filter(product_id=product_id, status=CardKey.Status.AVAILABLE).count()


def stock_warm(*, product: Product, rebuild: bool = False) -> tuple[bool, int | None]:
    """Rebuild a product's gate from MariaDB if its stock is unknown, and
    publish its sale rules either way. Returns (rebuilt, stock now). With
    rebuild, the gate is dropped first and rebuilt whatever it held: the
    operator's repair for counts reconciliation does not check (a buyer's
    share left counted by a refund that could not reach Redis); checkout of
    the product pauses for that moment.

    Holds the product's persist fence, so no batch of reservations read from
    Redis before a data loss can land in MariaDB after the figures are read."""
    with persist_fence(product_id=product.id, timeout=settings.WARM_FENCE_TIMEOUT) as held:
        if not held:
            raise WarmBlocked(f"{product.sku}: reservations are being persisted; try again")
        if rebuild:
            gate.stock_gate_forget(product_id=product.id)
        if gate.stock_remaining_known(product_id=product.id):
            gate.stock_rules_publish(product=product)
            return False, gate.stock_gate_state(product_id=product.id)[0]
        # Reservations still queued (a Redis that kept its data) become orders
        # first, so the figures below count them.
        order_persist_queue_drain(product_id=product.id)
        return _stock_rebuild_from_database(product)


class WarmBlocked(Exception):
    pass


def _stock_rebuild_from_database(product: Product) -> tuple[bool, int | None]:
    holding = list(Order.objects.filter(product_id=product.id, status__in=HOLDING_STATUSES))
    stock = available_keys(product_id=product.id) - sum(o.quantity for o in holding)
    buyers: dict[str, int] = {}
    held: dict[str, dict] = {}
    for order in Order.objects.filter(product_id=product.id, status__in=COUNTED_STATUSES).only(
        "order_no", "status", "buyer_keys", "buyer_email", "quantity"
    ):
        identities = order_buyers(order)
        for identity in identities:
            buyers[identity] = buyers.get(identity, 0) + order.quantity
        if order.status == Order.Status.NEEDS_ATTENTION:
            held[order.order_no] = {"buyers": identities, "quantity": order.quantity}
    unpaid: dict[str, int] = {}
    reservations = {}
    for order in holding:
        record = order_reservation_record(order, paid=order.status != Order.Status.AWAITING_PAYMENT)
        reservations[order.order_no] = record
        if not record["paid"]:
            for identity in record["buyers"]:
                unpaid[identity] = unpaid.get(identity, 0) + 1
    rebuilt = gate.stock_rebuild(
        product=product, stock=stock, buyers=buyers, unpaid=unpaid, reservations=reservations, held=held
    )
    current, _ = gate.stock_gate_state(product_id=product.id)
    return rebuilt, current


def products_to_warm(*, sku: str | None = None) -> list[Product]:
    """Active products whose sale has not ended (or the one named). Read from
    the primary: a replica's stale row would republish rules a merchant just
    changed (a pause undone)."""
    products = Product.objects.using("default")
    if sku:
        return list(products.filter(sku=sku))
    now = timezone.now()
    return list(products.filter(is_active=True).filter(Q(sale_ends_at__isnull=True) | Q(sale_ends_at__gt=now)))


def gates_check_redis_restart() -> list[int]:
    """After Redis restarted with data that may lag MariaDB, forget every
    warmed gate (checkout pauses) so each is rebuilt from the record.
    Returns the product ids forgotten."""
    if not gate.stock_redis_restarted():
        return []
    forgotten = gate.stock_warmed_product_ids()
    for product_id in forgotten:
        gate.stock_gate_forget(product_id=product_id)
    logger.warning("Redis restarted with its data; gates of %d products will be rebuilt", len(forgotten))
    return forgotten


@dataclass
class ReconcileReport:
    redriven: list[str] = field(default_factory=list)
    refunds_redriven: list[str] = field(default_factory=list)
    rewarmed_after_restart: int = 0
    persisted: int = 0
    expired: int = 0
    finished: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    rewarmed: list[str] = field(default_factory=list)
    drift_fixed: dict[str, int] = field(default_factory=dict)
    needs_attention: int = 0
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"re-driven paid orders: {len(self.redriven)} {' '.join(self.redriven)}".rstrip(),
            f"re-driven refunds: {len(self.refunds_redriven)} {' '.join(self.refunds_redriven)}".rstrip(),
            f"gates distrusted after a Redis restart with old data: {self.rewarmed_after_restart}",
            f"reservations persisted: {self.persisted}",
            f"reservations expired: {self.expired}",
            f"reservations brought up to date (paid, delivered, needing attention): {len(self.finished)}",
            f"stock returned for ended orders: {len(self.released)}",
            f"gates rebuilt after loss: {len(self.rewarmed)} {' '.join(self.rewarmed)}".rstrip(),
            "stock drift fixed: "
            + (", ".join(f"{sku} {delta:+d}" for sku, delta in self.drift_fixed.items()) or "none"),
            f"orders needing attention: {self.needs_attention}",
        ]
        out += [f"error: {e}" for e in self.errors]
        return out

    @property
    def fixed_anything(self) -> bool:
        return bool(
            self.redriven
            or self.refunds_redriven
            or self.rewarmed_after_restart
            or self.persisted
            or self.expired
            or self.finished
            or self.released
            or self.rewarmed
            or self.drift_fixed
        )


def reconcile_run(*, drift_settle_seconds: float = 1.0) -> ReconcileReport:
    """Re-drive what is stuck and repair the gate; report what was found."""
    from apps.orders import services as orders
    from apps.orders.tasks import fulfil_order_task, refund_order_task

    report = ReconcileReport()
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.FULFIL_REDRIVE_AFTER_SECONDS)
    stuck = list(
        Order.objects.filter(status=Order.Status.PAID, paid_at__lt=cutoff).order_by("id").values_list("id", "order_no")
    )
    if stuck:
        # One task serves them all (it drains every paid order). Published
        # directly, not through the coalescing request: the mark of a lost task
        # may be what left them stuck.
        fulfil_order_task.delay(stuck[0][0])
        report.redriven = [order_no for _, order_no in stuck]
    # A refund request lost with its task (or out of retries) is asked again;
    # asking twice is harmless (payment_refund_request acts once per order).
    for order_id, order_no in Order.objects.filter(
        status=Order.Status.REFUND_PENDING, updated_at__lt=cutoff
    ).values_list("id", "order_no"):
        refund_order_task.delay(order_id)
        report.refunds_redriven.append(order_no)
    report.needs_attention = Order.objects.filter(status=Order.Status.NEEDS_ATTENTION).count()
    try:
        report.rewarmed_after_restart = len(gates_check_redis_restart())
        report.persisted = orders.order_persist_queued()
        report.expired = orders.order_expire_due()
    except (RedisError, DatabaseError) as exc:
        report.errors.append(f"{type(exc).__name__}: {exc}")
    for product in products_to_warm():
        # One product's trouble (a lock wait, Redis gone mid-run) must not
        # stop the others' repairs.
        try:
            _reconcile_product(product, report, drift_settle_seconds)
        except (RedisError, DatabaseError) as exc:
            report.errors.append(f"{product.sku}: {type(exc).__name__}: {exc}")
    metrics.reconcile_reported(report)
    return report


def _reconcile_product(product: Product, report: ReconcileReport, settle: float) -> None:
    stock, reservations = gate.stock_gate_state(product_id=product.id)
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
    drift = _stock_drift(product.id)
    if drift and settle:
        # A delivery between the two reads looks like drift for a moment; act
        # only on drift that holds still.
        time.sleep(settle)
        if _stock_drift(product.id) != drift:
            return
    if drift:
        gate.stock_adjust(product_id=product.id, delta=drift)
        report.drift_fixed[product.sku] = drift
        logger.warning("stock drift on %s repaired by %+d", product.sku, drift)


def _clear_ended_reservations(product: Product, reservations: dict[str, dict], report: ReconcileReport) -> None:
    if not reservations:
        return
    now = time.time()
    statuses = dict(Order.objects.filter(order_no__in=list(reservations)).values_list("order_no", "status"))
    for order_no, record in reservations.items():
        status = statuses.get(order_no)
        if status in (Order.Status.DELIVERED, Order.Status.NEEDS_ATTENTION):
            gate.stock_reservations_paid(
                reservations=[(product.id, order_no)], finish=True, held=status == Order.Status.NEEDS_ATTENTION
            )
            report.finished.append(order_no)
        elif status in (Order.Status.REFUND_PENDING, Order.Status.REFUNDED):
            if gate.stock_release(product_id=product.id, order_no=order_no, unpaid_only=False):
                report.released.append(order_no)
        elif status == Order.Status.EXPIRED:
            # A reservation marked paid for an order still expired: a late
            # payment's transaction took the stock, then failed to commit.
            if _still_expired(order_no) and gate.stock_release(
                product_id=product.id, order_no=order_no, unpaid_only=not record.get("paid")
            ):
                report.released.append(order_no)
        elif status is None and int(record["reserved_until"]) + ORPHAN_GRACE_SECONDS < now:
            # Never became an order (its record was refused, or lost with a
            # worker's data) and long past its reservation: nobody can pay it.
            if gate.stock_release(product_id=product.id, order_no=order_no, unpaid_only=True):
                report.released.append(order_no)
        elif status == Order.Status.PAID and not record.get("paid"):
            gate.stock_reservations_paid(reservations=[(product.id, order_no)])
            report.finished.append(order_no)


def _release_held_of_refunded(product: Product, report: ReconcileReport) -> None:
    """Buyers' shares still held for orders refunded meanwhile (the refund
    could not reach Redis) drop now."""
    held = gate.stock_held_orders(product_id=product.id)
    if not held:
        return
    refunded = Order.objects.filter(
        order_no__in=held, status__in=(Order.Status.REFUND_PENDING, Order.Status.REFUNDED)
    ).values_list("order_no", flat=True)
    for order_no in refunded:
        if gate.stock_buyers_uncount(product_id=product.id, order_no=order_no):
            report.released.append(order_no)


def _still_expired(order_no: str) -> bool:
    """Re-read under the row lock, so a late payment that is committing right
    now is not mistaken for one that failed."""
    with transaction.atomic():
        return Order.objects.select_for_update().filter(order_no=order_no, status=Order.Status.EXPIRED).exists()


def _stock_drift(product_id: int) -> int:
    """Expected minus actual stock. Redis is read before MariaDB so that a
    delivery in between can only make the expected figure look lower, never
    higher: a wrong reading never raises stock above the keys there are."""
    stock, reservations = gate.stock_gate_state(product_id=product_id)
    if stock is None:
        return 0
    reserved = sum(int(r["quantity"]) for r in reservations.values())
    expected = available_keys(product_id=product_id) - reserved
    return expected - stock
