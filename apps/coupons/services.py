"""A coupon's uses, counted in the gate Redis with the same atomicity as stock.

Checkout takes a use with coupon_take.lua on the coupon's own keys ({c:<id>})
just before checkout.lua reserves the stock on the product's ({p:<id>}), and
gives it back at once when checkout refuses: two scripts, because a coupon
spans products and Redis Cluster runs one script on one slot
(docs/architecture.md, "Coupons"). Every use is a claim named by its order
number, so giving it back acts once. A process that dies between the two
calls leaves a claim no order holds: a use lost for a while (never one too
many), which reconciliation gives back (coupon_claims_reconcile).

Counters lost with Redis are rebuilt from MariaDB and the reservations still
queued for it, on the next take, under the products' persist fences (P6)."""

import json
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from apps.catalog.models import Product
from apps.core.db_locks import named_lock, persist_fence
from apps.orders.exceptions import SalePaused
from apps.orders.identity import order_number_product_id
from apps.orders.models import COUNTED_STATUSES, Order
from apps.stock import selectors as gate
from apps.stock.redis import redis_text, stock_redis
from apps.stock.redis_keys import coupon_buyers_key, coupon_claims_key, coupon_idempotency_key, coupon_uses_key
from apps.stock.reservations import Reservation
from apps.stock.scripts import lua_script

from .exceptions import CouponLimitExceeded, CouponUsedUp
from .models import Coupon
from .selectors import CouponInfo

logger = logging.getLogger(__name__)

NO_CAP = -1


def _keys(coupon_id: int) -> list[str]:
    return [coupon_uses_key(coupon_id), coupon_buyers_key(coupon_id), coupon_claims_key(coupon_id)]


def coupon_buyer(buyers) -> str:
    """The identity a coupon's per-buyer cap counts: the normalised email's
    (the first of a reservation's buyers, identity.buyer_identities)."""
    return next((b for b in buyers if b.startswith("e:")), buyers[0])


@dataclass(frozen=True)
class CouponUse:
    """The order number holding the use (another request's with the same
    idempotency key, when that one took it first), and whether this call took it."""

    order_no: str
    taken_now: bool


def coupon_use_take(
    *, coupon: CouponInfo, order_no: str, buyer: str, product_id: int, idempotency_digest: str = ""
) -> CouponUse:
    """Take one use of the coupon for this order (a no-op if it holds one).
    With an idempotency digest, a request whose key already took a use acts
    for that key's order number (a double click whose first request has not
    reserved yet). Raises CouponUsedUp, CouponLimitExceeded; SalePaused if
    the uses cannot be counted; RedisError while Redis is away."""
    answer = _take_counted(coupon.id, order_no, buyer, _caps(coupon), product_id=product_id, digest=idempotency_digest)
    if answer[0] == "used_up":
        raise CouponUsedUp()
    if answer[0] == "limit_exceeded":
        raise CouponLimitExceeded()
    if answer[0] not in ("taken", "held"):
        raise SalePaused()
    return CouponUse(order_no=answer[1], taken_now=answer[0] == "taken")


def coupon_use_retake(*, coupon_id: int, order_no: str, buyer: str) -> bool:
    """An order whose use was given back (it expired, or was cancelled) is
    paid after all: take its use again if the coupon's caps allow, as a late
    payment takes stock again if keys remain. False when a cap refuses (the
    payment is then refunded). Raises SalePaused if the uses cannot be
    counted yet, RedisError while Redis is away (the provider retries)."""
    coupon = Coupon.objects.using("default").filter(pk=coupon_id).first()
    if coupon is None:
        return True  # deleted: nothing counts its uses any more
    answer = _take_counted(coupon_id, order_no, buyer, _caps(coupon))[0]
    if answer not in ("taken", "held", "used_up", "limit_exceeded"):
        raise SalePaused()
    return answer in ("taken", "held")


def _caps(coupon: CouponInfo | Coupon) -> list[int]:
    return [
        NO_CAP if coupon.max_uses is None else coupon.max_uses,
        NO_CAP if coupon.max_uses_per_buyer is None else coupon.max_uses_per_buyer,
    ]


def _take_counted(
    coupon_id: int, order_no: str, buyer: str, caps: list[int], *, product_id: int = 0, digest: str = ""
) -> list[str]:
    """coupon_take.lua's answer, counting the uses from the record first when Redis lost them."""
    answer = _take(coupon_id, order_no, buyer, caps, product_id=product_id, digest=digest)
    if answer[0] == "unknown":
        coupon_uses_rebuild(coupon_id=coupon_id)
        answer = _take(coupon_id, order_no, buyer, caps, product_id=product_id, digest=digest)
    return answer


def _take(
    coupon_id: int, order_no: str, buyer: str, caps: list[int], *, product_id: int = 0, digest: str = ""
) -> list[str]:
    """[answer, order number] or [answer] (coupon_take.lua)."""
    # Shorter-lived than checkout's own idempotency record (RESERVATION_TTL +
    # IDEMPOTENCY_GRACE_SECONDS), set before it: while this names an order
    # number, checkout.lua answers a reservation of it as a duplicate.
    ttl = settings.RESERVATION_TTL if digest else 0
    keys = [*_keys(coupon_id), coupon_idempotency_key(coupon_id, product_id, digest)]
    reply = lua_script("coupon_take")(keys=keys, args=[order_no, buyer, *caps, ttl])
    return [redis_text(part) for part in reply]


def coupon_use_return(*, coupon_id: int, order_no: str) -> bool:
    """Give the order's use back; True when given back now (once per use)."""
    return lua_script("coupon_release")(keys=_keys(coupon_id), args=[order_no]) == 1


def coupon_use_return_rollback_unsafe(*, order: Order) -> None:
    """coupon_use_return for an order that stopped counting (expired,
    cancelled, refunded), best effort: without Redis, reconciliation gives it
    back later (coupon_claims_reconcile)."""
    if order.coupon_id is None:
        return
    try:
        coupon_use_return(coupon_id=order.coupon_id, order_no=order.order_no)
    except RedisError:
        logger.warning("order %s: coupon use not given back (Redis unreachable); reconcile will", order.order_no)


def coupon_uses_rebuild(*, coupon_id: int) -> bool:
    """Count the coupon's uses from the record while Redis does not know them:
    orders that count (COUNTED_STATUSES) with the coupon, and reservations
    still queued for MariaDB. The queues are read first: a reservation
    persisted meanwhile is then seen twice and counted once (by order
    number), never missed. Returns True when written now."""
    # One process counts; the crowd that found the counters missing with it
    # waits here, then finds them written (coupon_warm.lua writes only once).
    with named_lock(f"coupon-uses:{coupon_id}", timeout=settings.WARM_FENCE_TIMEOUT):
        if stock_redis().exists(coupon_uses_key(coupon_id)):
            return False
        return _rebuild(coupon_id)


def _rebuild(coupon_id: int) -> bool:
    coupon = Coupon.objects.using("default").filter(pk=coupon_id).first()
    if coupon is None:
        return False
    # Every product it covers (all of them for a coupon without products):
    # after a loss, the gate's list of warmed products is no guide.
    product_ids = sorted(
        coupon.products.values_list("id", flat=True) or Product.objects.using("default").values_list("id", flat=True)
    )
    # The products' persist fences, as warm-up holds one (apps/stock/warmup.py
    # _warm): a batch read from a queue before Redis lost it lands in MariaDB
    # before the orders are read here, never after. Taken in id order, so two
    # rebuilds cannot wait on each other. Not had in time: the counters stay
    # unknown, the take answers sale_paused, and the next take tries again.
    with ExitStack() as fences:
        for product_id in product_ids:
            held = fences.enter_context(persist_fence(product_id=product_id, timeout=settings.WARM_FENCE_TIMEOUT))
            if not held:
                logger.warning("coupon %s: not rebuilt, product %s is being persisted", coupon.code, product_id)
                return False
        return _rebuild_fenced(coupon, product_ids)


def _rebuild_fenced(coupon: Coupon, product_ids: list[int]) -> bool:
    """Caller holds the persist fences of `product_ids`."""
    coupon_id = coupon.id
    now_ms = int(time.time() * 1000)
    claims: dict[str, dict] = {}
    for product_id in product_ids:
        for raw in gate.stock_queue_peek(product_id=product_id):
            try:
                reservation = Reservation.from_json(raw)
            except (KeyError, TypeError, ValueError):
                continue
            if reservation.coupon_id == coupon_id:
                claims[reservation.order_no] = {"buyer": coupon_buyer(reservation.buyers), "at": now_ms}
    for order in (
        Order.objects.using("default")
        .filter(coupon_id=coupon_id, status__in=COUNTED_STATUSES)
        .only("order_no", "buyer_identities", "buyer_email")
    ):
        claims[order.order_no] = {"buyer": coupon_buyer(order.buyer_identity_list()), "at": now_ms}
    written = lua_script("coupon_warm")(keys=_keys(coupon_id), args=[json.dumps(claims)]) == 1
    if written:
        logger.info("coupon %s: %d uses counted from the record", coupon.code, len(claims))
    return written


def coupon_claims_reconcile(*, grace_seconds: float | None = None) -> list[str]:
    """Give back uses no live order holds: claims of orders that stopped
    counting while Redis could not be told, and claims older than
    `grace_seconds` (COUPON_CLAIM_GRACE_SECONDS) of orders neither MariaDB nor
    the gate knows (a checkout that died between taking the use and
    reserving). Returns the order numbers given back."""
    grace_ms = 1000 * (settings.COUPON_CLAIM_GRACE_SECONDS if grace_seconds is None else grace_seconds)
    now_ms = int(timezone.now().timestamp() * 1000)
    client = stock_redis()
    returned: list[str] = []
    for coupon_id in Coupon.objects.using("default").values_list("id", flat=True):
        claims = {redis_text(k): json.loads(v) for k, v in client.hgetall(coupon_claims_key(coupon_id)).items()}
        if not claims:
            continue
        statuses = dict(
            Order.objects.using("default").filter(order_no__in=list(claims)).values_list("order_no", "status")
        )
        for order_no, claim in claims.items():
            if order_no in statuses:
                stale = statuses[order_no] not in COUNTED_STATUSES
            else:
                stale = now_ms - int(claim.get("at", 0)) > grace_ms and not _reserved(order_no)
            if stale and coupon_use_return(coupon_id=coupon_id, order_no=order_no):
                returned.append(order_no)
    return returned


def _reserved(order_no: str) -> bool:
    """Does the gate hold a reservation for it, or has it become an order since?"""
    product_id = order_number_product_id(order_no)
    if product_id is not None and gate.stock_reservation_get(product_id=product_id, order_no=order_no) is not None:
        return True
    return Order.objects.using("default").filter(order_no=order_no).exists()


def coupon_claims_restore() -> list[str]:
    """Count again the uses of orders that count but hold no claim: a late
    payment takes its use inside its transaction, and a reconciliation that
    read the order as expired just before that commit gave the use back.
    A coupon whose counters are unknown is left to its rebuild, which counts
    them. Claims are read before the orders: an order that stops counting
    meanwhile has committed its status before giving its use back, so it is
    not taken for one without. Returns the order numbers counted again."""
    client = stock_redis()
    restored: list[str] = []
    for coupon_id in Coupon.objects.using("default").values_list("id", flat=True):
        if not client.exists(coupon_uses_key(coupon_id)):
            continue  # unknown: the rebuild counts every order that counts
        held = {redis_text(k) for k in client.hkeys(coupon_claims_key(coupon_id))}
        counted = Order.objects.using("default").filter(coupon_id=coupon_id, status__in=COUNTED_STATUSES)
        # One COUNT per coupon in the usual case; the rows only when one is missing.
        if counted.filter(order_no__in=list(held)).count() == counted.count():
            continue
        for order in counted.exclude(order_no__in=list(held)).only("order_no", "buyer_identities", "buyer_email"):
            buyer = coupon_buyer(order.buyer_identity_list())
            if _take(coupon_id, order.order_no, buyer, [NO_CAP, NO_CAP])[0] == "taken":
                logger.warning("order %s counts but held no use of coupon %s; counted again", order.order_no, coupon_id)
                restored.append(order.order_no)
    return restored
