"""Reads of the stock gate, for pages: how much is left, never a decision."""

from django.conf import settings
from redis.exceptions import RedisError

from .keys import stock_key
from .redis import stock_redis

IN_STOCK, LOW, SOLD_OUT, UNKNOWN = "in_stock", "low", "sold_out", "unknown"


def stock_remaining_many(*, product_ids: list[int]) -> dict[int, int | None]:
    """Remaining stock per product from the Redis counter, one round trip.
    None for a product not warmed (or when Redis cannot be reached)."""
    if not product_ids:
        return {}
    try:
        values = stock_redis().mget([stock_key(pid) for pid in product_ids])
    except RedisError:
        return dict.fromkeys(product_ids)
    return {pid: (None if v is None else max(int(v), 0)) for pid, v in zip(product_ids, values, strict=False)}


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
