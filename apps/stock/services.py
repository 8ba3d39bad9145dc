"""Writes to the stock gate in Redis. The checkout decision is one script call;
everything else here keeps the gate in step with MariaDB, the record."""

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from redis.exceptions import RedisError

from .redis import gate_is_cluster, redis_text, stock_redis
from .redis_keys import (
    bucket_key,
    buyers_key,
    coupon_buyers_key,
    coupon_claims_key,
    coupon_uses_key,
    held_key,
    idempotency_key,
    persist_queue_key,
    persist_requested_key,
    redis_run_id_key,
    redis_run_id_marker_key,
    reservations_key,
    rules_key,
    stock_key,
    strikes_key,
    unpaid_key,
    warmed_products_key,
)
from .reservations import HeldShare, Reservation
from .scripts import lua_script, lua_scripts_pipelined

logger = logging.getLogger(__name__)

# Redis stores "no bound" as -1 so the script can compare numbers only.
NO_BOUND = -1


@dataclass(frozen=True)
class ReserveOutcome:
    """What the checkout script decided. `code` is "ok", "duplicate" or a refusal."""

    code: str
    order_no: str = ""
    remaining: int = 0
    idempotency_value: str = ""
    # The reservation is the first of a burst: the caller publishes the persist
    # task that drains it and those after it (order_persist_request_rollback_unsafe).
    persist_requested: bool = False
    limit: int = 0
    held: int = 0
    max_per_order: int = 0
    max_unpaid: int = 0
    # unpaid_limit: True when the client address's cap refused, not the buyer's.
    by_address: bool = False
    retry_after_ms: int = 0


def checkout_script_arguments(
    *,
    product_id: int,
    order_no: str,
    buyers: list[str],
    quantity: int,
    token_hash: str,
    email: str,
    idempotency_digest: str = "",
    idempotency_value: str = "",
    strike_fields: tuple[str, str] = ("", ""),
    captcha_solved: bool = False,
    unpaid_cap_identity: str = "",
    language: str = "",
    coupon: tuple[int, str, str, str] | None = None,
    input_values: str = "",
) -> tuple[list, list]:
    """KEYS and ARGV of one call of checkout.lua (its header documents them).
    `coupon` is (id, code, kind, value) of a coupon whose use was taken;
    `input_values` the buyer's checkout fields, encrypted (Redis holds no
    secrets in clear)."""
    if not buyers:
        raise ValueError("at least one buyer identity is needed")
    keys = [
        stock_key(product_id),
        rules_key(product_id),
        buyers_key(product_id),
        reservations_key(product_id),
        persist_queue_key(product_id),
        idempotency_key(product_id, idempotency_digest or "-"),
        unpaid_key(product_id),
        bucket_key(product_id, "checkout"),
        strikes_key(product_id),
        persist_requested_key(product_id),
    ]
    args = [
        order_no,
        quantity,
        token_hash,
        email,
        idempotency_value if idempotency_digest else "",
        settings.RESERVATION_TTL + settings.IDEMPOTENCY_GRACE_SECONDS,
        settings.RESERVATION_TTL,
        settings.CHECKOUT_RATE_PER_SECOND,
        settings.CHECKOUT_RATE_BURST,
        settings.PERSIST_BACKLOG_LIMIT,
        settings.BOT_SOFT_THRESHOLD,
        settings.BOT_WINDOW_SECONDS,
        "1" if captcha_solved else "0",
        *strike_fields,
        unpaid_cap_identity,
        settings.UNPAID_CAP_PER_IP,
        int(settings.PERSIST_REQUEST_TTL_SECONDS * 1000),
        language,
        *(coupon if coupon else ("", "", "", "")),
        input_values,
        *buyers,
    ]
    return keys, args


def stock_reserve(**call) -> ReserveOutcome:
    """The checkout decision: one Redis round trip (rate cap, idempotency,
    captcha threshold, rules, window, limits for every buyer identity and the
    client address's unpaid cap, stock;
    then decrement, reserve and queue for persistence). Takes the arguments
    of checkout_script_arguments."""
    keys, args = checkout_script_arguments(**call)
    reply = lua_script("checkout")(keys=keys, args=args)
    code = redis_text(reply[0])
    if code == "ok":
        return ReserveOutcome(
            code=code, order_no=redis_text(reply[1]), remaining=int(reply[2]), persist_requested=reply[3] == 1
        )
    if code == "duplicate":
        return ReserveOutcome(code=code, idempotency_value=redis_text(reply[1]))
    if code == "limit_exceeded":
        return ReserveOutcome(code=code, limit=int(reply[1]), held=int(reply[2]))
    if code == "too_many":
        return ReserveOutcome(code=code, max_per_order=int(reply[1]))
    if code == "unpaid_limit":
        return ReserveOutcome(code=code, max_unpaid=int(reply[1]), by_address=len(reply) > 2)
    if code == "rate_limited":
        return ReserveOutcome(code=code, retry_after_ms=int(reply[1]))
    return ReserveOutcome(code=code)


def stock_strike_add(*, product_id: int, strike_fields: tuple[str, str]) -> None:
    """Count a suspicious checkout attempt for the client's IP and device."""
    fields = [f for f in strike_fields if f]
    if fields:
        lua_script("strike")(keys=[strikes_key(product_id)], args=[settings.BOT_WINDOW_SECONDS, *fields])


def stock_reservation_release(*, product_id: int, order_no: str) -> bool:
    """Return an ended reservation's stock and its buyers' shares (a refund, a
    cancel, an orphan). Idempotent: True when released now."""
    return _release(product_id=product_id, order_no=order_no, unpaid_only=False)


def stock_reservation_release_unpaid(*, product_id: int, order_no: str) -> bool:
    """The same for an expired reservation, unless a payment got to it first
    (then it keeps its stock)."""
    return _release(product_id=product_id, order_no=order_no, unpaid_only=True)


def _release(*, product_id: int, order_no: str, unpaid_only: bool) -> bool:
    keys = [stock_key(product_id), buyers_key(product_id), reservations_key(product_id), unpaid_key(product_id)]
    return lua_script("release")(keys=keys, args=[order_no, "1" if unpaid_only else "0"]) == 1


# paid.lua's two flags, spelled out once (see its header).
_PAID, _FINISHED, _HELD = ("0", "0"), ("1", "0"), ("1", "1")


def stock_reservations_paid(*, reservations: list[tuple[int, str]]) -> None:
    """Reservations (product id, order number) were paid: their buyers'
    unpaid slots free up; they and their stock stay taken."""
    _paid_script(reservations, _PAID)


def stock_reservations_finish(*, reservations: list[tuple[int, str]]) -> None:
    """Reservations whose orders were delivered end (paid first, if the
    payment's own update never reached Redis); their stock stays sold."""
    _paid_script(reservations, _FINISHED)


def stock_reservations_hold(*, reservations: list[tuple[int, str]]) -> None:
    """Reservations whose orders ended without keys (needs attention) end, but
    their buyers' shares stay counted, held for a refund or a retry to settle."""
    _paid_script(reservations, _HELD)


def _paid_script(reservations: list[tuple[int, str]], flags: tuple[str, str]) -> None:
    """One round trip per gate master (a pipeline; each script call stands
    alone, so reservations of products on different masters never share a
    command)."""
    if not reservations:
        return
    lua_scripts_pipelined(
        [
            ("paid", [reservations_key(product_id), unpaid_key(product_id), held_key(product_id)], [order_no, *flags])
            for product_id, order_no in reservations
        ]
    )


def stock_rereserve(*, product_id: int, reservation: Reservation) -> int:
    """Take stock again for an order paid after its reservation expired, and
    count it for its buyers: 1 taken, 0 too little left, -1 not warmed.
    `reservation` is marked paid."""
    return _rereserve(product_id=product_id, reservation=reservation, buyers_counted=False)


def stock_rereserve_held(*, product_id: int, reservation: Reservation) -> int:
    """The same for a retried order that needed attention: its buyers' shares
    are still held, so only the stock is taken, and the held share goes back
    into the reservation."""
    return _rereserve(product_id=product_id, reservation=reservation, buyers_counted=True)


def _rereserve(*, product_id: int, reservation: Reservation, buyers_counted: bool) -> int:
    keys = [
        stock_key(product_id),
        buyers_key(product_id),
        reservations_key(product_id),
        unpaid_key(product_id),
        held_key(product_id),
    ]
    args = [reservation.order_no, reservation.to_json(), "1" if buyers_counted else "0"]
    return int(lua_script("rereserve")(keys=keys, args=args))


def stock_buyers_uncount(*, product_id: int, order_no: str) -> bool:
    """Drop the buyers' shares an order that needed attention still holds (a
    refund). Idempotent; True when they dropped now."""
    return lua_script("uncount")(keys=[buyers_key(product_id), held_key(product_id)], args=[order_no]) == 1


def stock_adjust(*, product_id: int, delta: int) -> int | None:
    """Move a warmed product's stock by delta; None when it is not warmed."""
    value = lua_script("adjust")(keys=[stock_key(product_id)], args=[delta])
    return None if value is None else int(value)


@dataclass(frozen=True)
class Withdrawal:
    """What withdraw.lua did: "ok" (taken; `stock` is what is left), "short"
    (nothing taken; `stock` is all that was free) or "unknown" (not warmed)."""

    code: str
    stock: int = 0


def stock_withdraw(*, product_id: int, units: int) -> Withdrawal:
    """Take `units` off a warmed product's stock at once, only if that many
    are free (a lower stock number, before the database commits it). The
    caller gives them back (stock_adjust) if its write then fails."""
    if units <= 0:
        raise ValueError("units must be positive")
    reply = lua_script("withdraw")(keys=[stock_key(product_id)], args=[units])
    code = redis_text(reply[0])
    return Withdrawal(code=code, stock=int(reply[1]) if len(reply) > 1 else 0)


def stock_rules_publish(*, product) -> None:
    """Copy the product's sale rules where the checkout script reads them."""
    stock_redis().hset(rules_key(product.id), mapping=sale_rules(product))


def sale_rules(product) -> dict:
    return {
        "active": "1" if product.is_active else "0",
        "starts": _epoch(product.sale_starts_at),
        "ends": _epoch(product.sale_ends_at),
        "max_per_order": product.max_per_order,
        "per_buyer_limit": product.per_buyer_limit,
        "price": str(product.price),
        "currency": product.currency,
        "paused": "1" if product.sale_paused else "0",
        "max_unpaid": product.max_unpaid_per_buyer,
        "tiers": price_tiers_rule(product.price_tiers.all()),
    }


def price_tiers_rule(tiers) -> str:
    """The wholesale prices as checkout.lua reads them: "min_quantity:price"
    pairs, ascending, space-separated; the prices stay text (no float in Lua)."""
    return " ".join(f"{t.min_quantity}:{t.unit_price}" for t in sorted(tiers, key=lambda t: t.min_quantity))


def stock_rebuild(
    *,
    product,
    stock: int,
    buyers: dict[str, int],
    unpaid: dict[str, int],
    reservations: list[Reservation],
    held: dict[str, HeldShare],
) -> bool:
    """Write a product's gate from database figures, only while its stock is
    unknown. Returns False when the stock was already there (nothing written)."""
    stock_rules_publish(product=product)
    keys = [
        stock_key(product.id),
        buyers_key(product.id),
        reservations_key(product.id),
        unpaid_key(product.id),
        held_key(product.id),
    ]
    args = [
        stock,
        json.dumps(buyers),
        json.dumps({r.order_no: r.to_json() for r in reservations}),
        json.dumps(unpaid),
        json.dumps({no: share.to_json() for no, share in held.items()}),
    ]
    rebuilt = lua_script("warm")(keys=keys, args=args) == 1
    stock_warmed_mark(product_id=product.id)
    return rebuilt


def stock_warmed_mark(*, product_id: int) -> None:
    """List the product among the warmed ones. Idempotent. Warm-up marks a
    product whose gate is there too: on a Redis Cluster the list can be lost
    with one master while the gates on the others live on."""
    stock_redis().sadd(warmed_products_key(), product_id)


def coupon_counters_forget(*, coupon_ids: list[int]) -> None:
    """Drop coupons' use counters: each is counted from the record again on
    its next take (its takes wait for that, they never guess)."""
    client = stock_redis()
    for coupon_id in coupon_ids:
        client.delete(coupon_uses_key(coupon_id), coupon_buyers_key(coupon_id), coupon_claims_key(coupon_id))


def stock_gate_forget(*, product_id: int) -> None:
    """Drop a product's stock counter: checkout pauses until a rebuild."""
    stock_redis().delete(stock_key(product_id))


@dataclass(frozen=True)
class GateRestarts:
    """What stock_redis_restarts() read. `restarted`: the masters (node
    names; "" for a single Redis) whose run id differs from the one their
    marker holds: their gates may lag MariaDB. `markers`: (master, marker
    key, run id) to record once those gates are forgotten, not before: a
    marker recorded first and a forget that then failed would leave stale
    gates trusted for good."""

    restarted: frozenset[str]
    markers: tuple[tuple[str, str, str], ...]

    def holds(self, redis_key: str) -> bool:
        """Does a restarted master hold this key?"""
        return gate_master_of(redis_key) in self.restarted


def gate_master_of(redis_key: str) -> str:
    """The name of the gate master holding the key ("" for a single Redis)."""
    client = stock_redis()
    return client.get_node_from_key(redis_key).name if gate_is_cluster(client) else ""


def stock_redis_restarts() -> GateRestarts:
    """Read each gate master's run id and its marker, writing nothing.
    Detected: a Redis come back from a restart or failover with data that
    may lag MariaDB (an AOF that missed its last second, a replica that was
    behind); a Redis that lost everything needs no check, its gates are
    simply missing. On a Redis Cluster each master in its own try: one that
    does not answer is left unchecked (and its marker unwritten) until it
    does. Raises RedisError when a single Redis does not answer."""
    client = stock_redis()
    if gate_is_cluster(client):
        return _cluster_restarts(client)
    run_id = client.info("server")["run_id"]
    known = client.get(redis_run_id_key())
    restarted = frozenset({""}) if known is not None and redis_text(known) != run_id else frozenset()
    return GateRestarts(restarted=restarted, markers=(("", redis_run_id_key(), run_id),))


def stock_redis_restarts_record(*, restarts: GateRestarts, except_masters: frozenset[str] = frozenset()) -> None:
    """Record the run ids read (but those of `except_masters`, whose gates
    could not all be forgotten: they are detected again next time), each
    master in its own try."""
    for master, marker, run_id in restarts.markers:
        if master in except_masters:
            continue
        try:
            stock_redis().set(marker, run_id)
        except RedisError as exc:
            logger.warning("run-id marker of gate master %s not written: %r", master or "redis", exc)


# How far to look for a marker tag whose slot a master owns: a master owning
# even a few hundred of the 16384 slots is found within a few thousand tries.
_MARKER_SEARCH_LIMIT = 1 << 20


def _cluster_restarts(client) -> GateRestarts:
    """Each master's run id is compared with the one its marker key holds,
    the marker kept on that master itself (redis_run_id_marker_key). A
    master restarted on its append-only file, or a replica promoted in its
    place, still holds the marker with the old run id: detected. A master
    that came back empty has lost its marker with its gates: those gates are
    missing and fail closed until warm-up rebuilds them, as on one Redis.
    Slots moved by a resharding can carry a marker to another master: that
    reads as a restart, and costs one needless rebuild, never a missed one."""
    owners = client.nodes_manager.slots_cache
    serving = {nodes[0].name for nodes in owners.values() if nodes}
    restarted, markers = set(), []
    for node in client.get_primaries():
        if node.name not in serving:
            continue  # a master without slots holds no gate
        marker = redis_run_id_marker_key(_marker_owned_by(client, owners, node.name))
        try:
            run_id = client.info("server", target_nodes=node)["run_id"]
            known = client.get(marker)
        except RedisError as exc:
            logger.warning("gate master %s unreadable, its restart left unchecked: %r", node.name, exc)
            continue
        if known is not None and redis_text(known) != run_id:
            restarted.add(node.name)
        markers.append((node.name, marker, run_id))
    return GateRestarts(restarted=frozenset(restarted), markers=tuple(markers))


def _marker_owned_by(client, owners, node_name: str) -> int:
    for marker in range(_MARKER_SEARCH_LIMIT):
        owner = owners.get(client.keyslot(redis_run_id_marker_key(marker)))
        if owner and owner[0].name == node_name:
            return marker
    raise RuntimeError(f"no run-id marker slot found on {node_name}")


def stock_persist_request_clear(*, product_id: int) -> None:
    """A persist task starts: the next reservation asks for another one."""
    stock_redis().delete(persist_requested_key(product_id))


def stock_queue_drop(*, product_id: int, count: int) -> None:
    """Drop the oldest `count` entries, once they are safely in MariaDB.
    Caller holds the product's persist fence."""
    stock_redis().ltrim(persist_queue_key(product_id), count, -1)


def _epoch(moment: datetime | None) -> int:
    return NO_BOUND if moment is None else int(moment.timestamp())
