"""Reads of the stock gate: what pages show (how much is left) and what the
services and repairs need to know (reservations, held shares, the queue).
Nothing here decides a sale; the checkout script does."""

import logging

from django.conf import settings
from redis.exceptions import RedisError

from .redis import gate_commands_per_master, redis_text, stock_redis
from .redis_keys import (
    held_key,
    idempotency_key,
    persist_queue_key,
    reservations_key,
    stock_key,
    strikes_key,
    warmed_products_key,
)
from .reservations import Reservation

logger = logging.getLogger(__name__)

IN_STOCK, LOW, SOLD_OUT, UNKNOWN = "in_stock", "low", "sold_out", "unknown"


def stock_remaining_many(*, product_ids: list[int]) -> dict[int, int | None]:
    """Remaining stock per product from the Redis counter, one round trip per
    gate master. None for a product not warmed, or whose master (or the one
    Redis) cannot be reached: a dead master makes only its own products unknown."""
    if not product_ids:
        return {}
    # GETs per master, not one MGET: on a Redis Cluster the products live on
    # several masters, and a multi-key command must stay in one slot.
    values = gate_commands_per_master([("GET", stock_key(pid)) for pid in product_ids])
    return {
        pid: (None if v is None or isinstance(v, RedisError) else max(int(v), 0))
        for pid, v in zip(product_ids, values, strict=True)
    }


def stock_remaining(*, product_id: int) -> int | None:
    return stock_remaining_many(product_ids=[product_id])[product_id]


def stock_status(remaining: int | None) -> str:
    if remaining is None:
        return UNKNOWN
    if remaining <= 0:
        return SOLD_OUT
    if remaining <= settings.LOW_STOCK_THRESHOLD:
        return LOW
    return IN_STOCK


def stock_remaining_known(*, product_id: int) -> bool:
    """Is the product's stock counter there (warmed)? Raises RedisError."""
    return bool(stock_redis().exists(stock_key(product_id)))


def stock_counter(*, product_id: int) -> int | None:
    """The stock counter as it is (None: not warmed). Raises RedisError."""
    value = stock_redis().get(stock_key(product_id))
    return None if value is None else int(value)


def stock_captcha_needed(*, product_id: int, strike_fields: tuple[str, str]) -> bool:
    """Does this client have to solve a captcha to check out this product?
    (The checkout script decides the same way; this is for the page.)"""
    threshold, fields = settings.BOT_SOFT_THRESHOLD, [f for f in strike_fields if f]
    if threshold <= 0 or not fields:
        return False
    seconds, micros = stock_redis().time()
    now_ms = seconds * 1000 + micros // 1000
    for value in stock_redis().hmget(strikes_key(product_id), fields):
        if value:
            count, since_ms = (int(part) for part in redis_text(value).split(":"))
            if now_ms - since_ms < settings.BOT_WINDOW_SECONDS * 1000 and count >= threshold:
                return True
    return False


def stock_reservation_get(*, product_id: int, order_no: str) -> Reservation | None:
    raw = stock_redis().hget(reservations_key(product_id), order_no)
    return Reservation.from_json(raw) if raw else None


def stock_gate_state(*, product_id: int) -> tuple[int | None, dict[str, Reservation]]:
    """The stock counter and the reservations, read together in one
    transaction (one product's keys share a slot, so a cluster runs it too). An entry that is not a reservation is logged and left out:
    one bad entry must not stop every repair of the product's gate."""
    pipe = stock_redis().pipeline(transaction=True)
    pipe.get(stock_key(product_id))
    pipe.hgetall(reservations_key(product_id))
    stock, entries = pipe.execute()
    reservations = {}
    for order_no, raw in entries.items():
        try:
            reservations[redis_text(order_no)] = Reservation.from_json(raw)
        except (KeyError, TypeError, ValueError):
            logger.error("product %s: reservation entry %s is unreadable; left as it is", product_id, order_no)
    return None if stock is None else int(stock), reservations


def stock_held_orders(*, product_id: int) -> list[str]:
    """Order numbers whose buyers' shares are held without a reservation."""
    return [redis_text(no) for no in stock_redis().hkeys(held_key(product_id))]


def stock_queue_peek(*, product_id: int, count: int | None = None) -> list[bytes]:
    """The oldest `count` (None: all) queued reservations of a product, as
    stored, left in the queue. Read each with Reservation.from_json: one that
    does not parse must not hide the rest. Caller holds the product's persist
    fence (apps.core.db_locks)."""
    return stock_redis().lrange(persist_queue_key(product_id), 0, -1 if count is None else count - 1)


def stock_queue_length(*, product_id: int) -> int:
    """How many reservations of a product wait to be persisted."""
    return stock_redis().llen(persist_queue_key(product_id))


def stock_warmed_product_ids() -> list[int]:
    return sorted(int(pid) for pid in stock_redis().smembers(warmed_products_key()))


def stock_idempotency_value(*, product_id: int, digest: str) -> str | None:
    """What an idempotency key's record holds (checkout.lua wrote it), or None."""
    value = stock_redis().get(idempotency_key(product_id, digest))
    return None if value is None else redis_text(value)
