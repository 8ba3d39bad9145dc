"""Warm a product's gate from MariaDB, the record: before its sale, after
Redis lost its data, and on an operator's rebuild.

The gate's stock of a product is its available units (the available keys of
a pool product; the merchant's stock number of a reusable-key or manual
product) minus the units reserved by orders not delivered yet. Warming writes that figure only while the
stock is unknown (checkout is paused then, so nothing races it)."""

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from apps.cardkeys.models import CardKey
from apps.catalog.models import Product
from apps.core.db_locks import persist_fence
from apps.coupons.models import Coupon
from apps.orders.models import COUNTED_STATUSES, HOLDING_STATUSES, Order

from . import selectors, services
from .redis_keys import coupon_uses_key, stock_key
from .reservations import HeldShare, Reservation

logger = logging.getLogger(__name__)


class WarmBlocked(Exception):
    pass


def available_keys(*, product_id: int) -> int:
    return CardKey.objects.filter(product_id=product_id, status=CardKey.Status.AVAILABLE).count()


def available_units(*, product: Product) -> int:
    """What the record holds for sale, before reservations: the available keys
    of a pool product, else its stock number, read afresh from the primary
    (a delivery takes from it in the transaction that marks the order).
    The number is a locking read, so the caller runs in a transaction: a
    change of the number in flight (catalog.services.product_stock_set holds
    the row) is waited for and read as committed, never read before it
    commits and then counted against a gate it has moved meanwhile. The
    caller keeps the lock until it has written the gate."""
    if product.sells_from_pool:
        return available_keys(product_id=product.id)
    return (
        Product.objects.using("default").select_for_update().values_list("stock_quantity", flat=True).get(id=product.id)
    )


def stock_warm(*, product: Product) -> tuple[bool, int | None]:
    """Rebuild a product's gate from MariaDB if its stock is unknown, and
    publish its sale rules either way. Returns (rebuilt, stock now). Raises
    WarmBlocked while reservations of the product are being persisted."""
    return _warm(product, forget_first=False)


def stock_gate_rebuild(*, product: Product) -> tuple[bool, int | None]:
    """Drop the product's gate and rebuild it from MariaDB whatever it held:
    the operator's repair for counts reconciliation does not check (a buyer's
    share left counted by a refund that could not reach Redis). Checkout of
    the product pauses for that moment."""
    return _warm(product, forget_first=True)


def _warm(product: Product, *, forget_first: bool) -> tuple[bool, int | None]:
    """Holds the product's persist fence, so no batch of reservations read from
    Redis before a data loss can land in MariaDB after the figures are read."""
    with persist_fence(product_id=product.id, timeout=settings.WARM_FENCE_TIMEOUT) as held:
        if not held:
            raise WarmBlocked(_("%(sku)s: reservations are being persisted; try again") % {"sku": product.sku})
        if forget_first:
            services.stock_gate_forget(product_id=product.id)
        if selectors.stock_remaining_known(product_id=product.id):
            services.stock_rules_publish(product=product)
            services.stock_warmed_mark(product_id=product.id)
            return False, selectors.stock_counter(product_id=product.id)
        return _stock_rebuild_from_database(product)


@transaction.atomic(using="default")
def _stock_rebuild_from_database(product: Product) -> tuple[bool, int | None]:
    reservations = [
        Reservation.from_order(order, paid=order.status != Order.Status.AWAITING_PAYMENT)
        for order in Order.objects.filter(product_id=product.id, status__in=HOLDING_STATUSES)
    ]
    buyers: dict[str, int] = {}
    held: dict[str, HeldShare] = {}
    for order in Order.objects.filter(product_id=product.id, status__in=COUNTED_STATUSES).only(
        "order_no", "status", "buyer_identities", "buyer_email", "quantity"
    ):
        identities = order.buyer_identity_list()
        for identity in identities:
            buyers[identity] = buyers.get(identity, 0) + order.quantity
        if order.status == Order.Status.NEEDS_ATTENTION:
            held[order.order_no] = HeldShare(buyers=tuple(identities), quantity=order.quantity)
    for queued in _queued_reservations_not_persisted(product.id):
        reservations.append(queued)
        for identity in queued.buyers:
            buyers[identity] = buyers.get(identity, 0) + queued.quantity
    unpaid: dict[str, int] = {}
    for reservation in reservations:
        if not reservation.paid:
            for identity in reservation.buyers:
                unpaid[identity] = unpaid.get(identity, 0) + 1
    stock = available_units(product=product) - sum(r.quantity for r in reservations)
    rebuilt = services.stock_rebuild(
        product=product, stock=stock, buyers=buyers, unpaid=unpaid, reservations=reservations, held=held
    )
    return rebuilt, selectors.stock_counter(product_id=product.id)


def _queued_reservations_not_persisted(product_id: int) -> list[Reservation]:
    """Reservations still queued for persistence (a Redis that kept its data,
    an operator's rebuild) are not orders yet but hold their stock all the
    same. The persist fence keeps the queue and the table still while this
    reads. An entry whose order exists already, in any state (a worker lost
    between its commit and the queue trim), was counted from the database.
    A reservation the database will refuse holds its stock until
    reconciliation releases it as an orphan, as it would without a rebuild;
    an entry that does not even parse holds nothing."""
    queued: dict[str, Reservation] = {}
    for raw in selectors.stock_queue_peek(product_id=product_id):
        try:
            reservation = Reservation.from_json(raw)
        except (KeyError, TypeError, ValueError):
            continue  # persistence drops it too
        queued.setdefault(reservation.order_no, reservation)
    persisted = Order.objects.filter(order_no__in=list(queued)).values_list("order_no", flat=True)
    for order_no in persisted:
        del queued[order_no]
    return list(queued.values())


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
    """After a gate Redis (on a cluster: a master) restarted with data that
    may lag MariaDB, forget the gates it holds (checkout of those products
    pauses) so each is rebuilt from the record; then record its new run id.
    In that order: should a forget fail, the restart is detected again on the
    next run. Returns the product ids forgotten."""
    restarts = services.stock_redis_restarts()
    forgotten: list[int] = []
    failed: set[str] = set()
    if restarts.restarted:
        # The warmed list and the products on sale: on a Redis Cluster the list
        # lives on one master and may lag (or be gone) while gates on the
        # restarted master are stale.
        try:
            warmed = set(selectors.stock_warmed_product_ids())
        except RedisError:
            warmed = set()  # its master is down: the products on sale still count
        candidates = sorted(warmed | {p.id for p in products_to_warm()})
        for product_id in candidates:
            if not restarts.holds(stock_key(product_id)):
                continue  # on a master that did not restart: its gate is as good as before
            try:
                services.stock_gate_forget(product_id=product_id)
            except RedisError as exc:
                logger.warning("gate of product %s not forgotten: %r", product_id, exc)
                failed.add(services.gate_master_of(stock_key(product_id)))
                continue
            forgotten.append(product_id)
        # Coupon use counters may lag the same way: each is counted again from
        # the record on its next take (apps.coupons.services.coupon_uses_rebuild).
        for coupon_id in Coupon.objects.using("default").values_list("id", flat=True):
            if not restarts.holds(coupon_uses_key(coupon_id)):
                continue
            try:
                services.coupon_counters_forget(coupon_ids=[coupon_id])
            except RedisError as exc:
                logger.warning("use counters of coupon %s not forgotten: %r", coupon_id, exc)
                failed.add(services.gate_master_of(coupon_uses_key(coupon_id)))
        logger.warning(
            "gate Redis restarted with its data (%s); gates of %d products will be rebuilt",
            ", ".join(sorted(name or "redis" for name in restarts.restarted)),
            len(forgotten),
        )
    services.stock_redis_restarts_record(restarts=restarts, except_masters=frozenset(failed))
    return forgotten
