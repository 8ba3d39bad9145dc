"""Overload protection: pause checkout store-wide while the workers are behind.

A beat task (overload_check_task, every ~2 s) measures the two backlogs the
workers drain: paid orders waiting for their keys plus mail messages (one per
fulfilment batch, or a mail retried alone) waiting in the broker, and the
reservations queued for persistence of every warmed product. When either
reaches its limit, the field `overloaded` of every warmed product's rules hash
is set to "1" and the checkout script answers queue_full (503 sale_paused with
Retry-After); it goes back to "0" only once both have drained below
BACKLOG_RESUME_RATIO of their limits, so the shop does not flap at the edge.
The storefront shows a notice meanwhile (overload_context).

The per-product persistence limit in the checkout script itself stays the
exact, atomic guard; this is the store-wide one that also sees the fulfilment
side.
"""

import logging
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from celery import current_app
from django.conf import settings
from kombu.transport.redis import PRIORITY_STEPS, Channel
from redis.exceptions import RedisError

from apps.orders.selectors import paid_orders_to_fulfil
from cardshop.broker import broker_is_redis

from .redis import gate_commands_per_master, stock_redis
from .redis_keys import backlog_ratio_key, overloaded_key, persist_queue_key, rules_key
from .selectors import stock_warmed_product_ids

logger = logging.getLogger(__name__)

# The storefront reads the flag at most this often per process.
NOTICE_CACHE_SECONDS = 2.0
# The backlog ratio the poll reads expires this long after the last check (beat runs it every ~2 s).
BACKLOG_RATIO_SECONDS = 30


@dataclass(frozen=True)
class Backlog:
    fulfil: int
    persist: int

    def over(self, *, ratio: float = 1.0) -> bool:
        """Is either backlog at or above `ratio` of its limit (a limit of 0 is off)?"""
        fulfil_limit, persist_limit = settings.FULFIL_BACKLOG_LIMIT, settings.PERSIST_BACKLOG_LIMIT
        return bool(
            (fulfil_limit > 0 and self.fulfil >= fulfil_limit * ratio)
            or (persist_limit > 0 and self.persist >= persist_limit * ratio)
        )

    def ratio(self) -> float:
        """The fuller of the two backlogs as a fraction of its limit (0 when both limits are off)."""
        fulfil_limit, persist_limit = settings.FULFIL_BACKLOG_LIMIT, settings.PERSIST_BACKLOG_LIMIT
        return max(
            self.fulfil / fulfil_limit if fulfil_limit > 0 else 0.0,
            self.persist / persist_limit if persist_limit > 0 else 0.0,
        )


@lru_cache(maxsize=1)
def _broker_redis() -> redis.Redis:
    # The broker may be another Redis (or database) than the gate's.
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2)


def celery_queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue's messages in: the queue's name
    after the transport's global_keyprefix, plus one list per priority step."""
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    return [f"{prefix}{queue}"] + [f"{prefix}{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS if step]


def broker_queue_depth(queue: str) -> int:
    """Messages waiting in a Celery queue (not those a worker holds). On the
    Redis broker: the lengths of kombu's lists; on RabbitMQ: the queue's
    ready count, from a passive declare on a pooled connection."""
    if broker_is_redis(settings.CELERY_BROKER_URL):
        pipe = _broker_redis().pipeline(transaction=False)
        for key in celery_queue_keys(queue):
            pipe.llen(key)
        return sum(pipe.execute())
    with current_app.pool.acquire(block=True, timeout=5) as connection:
        return connection.default_channel.queue_declare(queue=queue, passive=True).message_count


def backlog_measure() -> Backlog:
    """Work still owed to paid buyers by the workers (orders waiting for
    fulfilment, from the database: fulfilment tasks coalesce, so their queue
    does not count them; mail messages waiting, from the broker), and
    reservations waiting for persistence. Paid orders of manual-delivery
    products wait for the merchant, not a worker: they are no backlog here."""
    to_fulfil = paid_orders_to_fulfil().using("default").count()
    fulfil = broker_queue_depth(settings.CELERY_QUEUE_MAIL) + to_fulfil
    # Per gate master: a dead master's products cannot sell meanwhile, and
    # their queues are left out rather than stopping the measure.
    queued = gate_commands_per_master([("LLEN", persist_queue_key(pid)) for pid in stock_warmed_product_ids()])
    persist = sum(length for length in queued if isinstance(length, int))
    return Backlog(fulfil=fulfil, persist=persist)


def overload_check() -> bool:
    """Measure the backlogs, decide with hysteresis, and write the decision
    into every warmed product's rules. Returns the decision. Written each run,
    not only on a change, so a product warmed meanwhile gets it too."""
    backlog = backlog_measure()
    client = stock_redis()
    was_overloaded = client.get(overloaded_key()) == b"1"
    overloaded = backlog.over() or (was_overloaded and backlog.over(ratio=settings.BACKLOG_RESUME_RATIO))
    flag = "1" if overloaded else "0"
    # Per gate master; a master that missed it gets it on the next run.
    client.set(overloaded_key(), flag)
    # For the order poll's interval; expires, so a stopped beat does not leave
    # clients slowed down by an old figure.
    client.set(backlog_ratio_key(), f"{backlog.ratio():.3f}", ex=BACKLOG_RATIO_SECONDS)
    gate_commands_per_master([("HSET", rules_key(pid), "overloaded", flag) for pid in stock_warmed_product_ids()])
    if overloaded != was_overloaded:
        log = logger.warning if overloaded else logger.info
        log(
            "checkout %s: fulfilment backlog %d, persistence backlog %d",
            "paused" if overloaded else "reopened",
            backlog.fulfil,
            backlog.persist,
        )
    return overloaded


_notice = {"at": float("-inf"), "value": False}


def shop_overloaded() -> bool:
    """The last decision, as the storefront shows it (read from Redis at most
    every NOTICE_CACHE_SECONDS per process). False when Redis is down: the
    pages say "sale paused" then anyway."""
    now = time.monotonic()
    if now - _notice["at"] >= NOTICE_CACHE_SECONDS:
        try:
            _notice["value"] = stock_redis().get(overloaded_key()) == b"1"
        except RedisError:
            _notice["value"] = False
        _notice["at"] = now
    return _notice["value"]


def overload_context(request) -> dict:
    """Template context processor: `shop_overloaded` for the layout's notice."""
    return {"shop_overloaded": shop_overloaded()}


_load = {"at": float("-inf"), "value": 0.0}


def shop_backlog_ratio() -> float:
    """The last measured backlog as a fraction of its limit (1.0 or more means
    checkout is paused), read from the gate at most every NOTICE_CACHE_SECONDS
    per process: the order poll asks for it on every request. 0.0 when
    unknown (no check lately, Redis down): clients then poll at the base rate."""
    now = time.monotonic()
    if now - _load["at"] >= NOTICE_CACHE_SECONDS:
        try:
            raw = stock_redis().get(backlog_ratio_key())
            _load["value"] = float(raw) if raw is not None else 0.0
        except (RedisError, ValueError):
            _load["value"] = 0.0
        _load["at"] = now
    return _load["value"]
