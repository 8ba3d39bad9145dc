"""Circuit breakers (pybreaker) around the shop's calls to other systems:
payment providers and mail.

After `fail_max` failures in a row a breaker opens and calls fail fast with
BreakerOpen, without touching the failing system, for `reset_timeout`
seconds; then one trial call goes through (half-open) and its outcome closes
or reopens the breaker. Settings: CIRCUIT_BREAKERS, by the part of the name
before ":" ("payment:sandbox" uses CIRCUIT_BREAKERS["payment"]).

The state lives in Redis, shared by every web and worker process: the
sandbox's notifications fail in a worker while the buyer who must be told is
on a web process, and failures anywhere count towards one threshold. Without
Redis a breaker counts nothing and lets calls through, as if it were absent.
"""

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import pybreaker
from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from apps.core.errors import ShopError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BreakerOpen(Exception):
    """The named system failed repeatedly; it is not called for `retry_after` seconds."""

    def __init__(self, name: str, retry_after: int):
        # Both in args, so the error pickles (Celery keeps it for a retry).
        super().__init__(name, retry_after)
        self.name = name
        self.retry_after = retry_after

    def __str__(self):
        return f"circuit breaker {self.name!r} is open; retry in {self.retry_after} s"


class _SharedBreaker(pybreaker.CircuitBreaker):
    def __init__(self, *, state_storage: pybreaker.CircuitRedisStorage, **kwargs):
        super().__init__(state_storage=state_storage, **kwargs)
        self.storage = state_storage

    def call(self, func, *args, **kwargs):
        # The base class holds a process-wide lock for the whole call, which
        # would queue this process's threads behind one slow provider call.
        # The state is in Redis and shared with other processes anyway.
        return self.state.call(func, *args, **kwargs)


_breakers: dict[str, _SharedBreaker] = {}


def _namespace(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:breaker:{name}"


def _breaker(name: str) -> _SharedBreaker:
    """This process's handle on the named breaker, with the current settings.
    Raises RedisError when Redis is unreachable."""
    namespace = _namespace(name)
    breaker = _breakers.get(namespace)
    if breaker is None:
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, get_redis_connection("default"), namespace=namespace
        )
        # A refusal with a reason (ShopError) is an answer, not an outage.
        breaker = _SharedBreaker(state_storage=storage, name=name, exclude=[ShopError])
        _breakers[namespace] = breaker
    config = settings.CIRCUIT_BREAKERS[name.split(":", 1)[0]]
    breaker.fail_max = config["fail_max"]
    breaker.reset_timeout = config["reset_timeout"]
    return breaker


def _retry_after(breaker: _SharedBreaker) -> int:
    opened_at = breaker.storage.opened_at
    if opened_at is None:
        return max(1, math.ceil(breaker.reset_timeout))
    left = (opened_at - datetime.now(UTC)).total_seconds() + breaker.reset_timeout
    return max(1, math.ceil(left))


def breaker_call(name: str, func: Callable[..., T], /, *args, **kwargs) -> T:
    """Call `func` through the named breaker. Raises BreakerOpen while it is
    open (also for the call whose failure opened it), else whatever `func`
    raises."""
    try:
        breaker = _breaker(name)
    except RedisError:
        logger.warning("circuit breaker %s bypassed: Redis unreachable", name)
        return func(*args, **kwargs)
    try:
        return breaker.call(func, *args, **kwargs)
    except pybreaker.CircuitBreakerError as exc:
        raise BreakerOpen(name, _retry_after(breaker)) from exc


def breaker_refusing(name: str) -> bool:
    """Would a call through the named breaker be refused right now (open, and
    its reset timeout not yet over)? False when Redis cannot tell."""
    try:
        breaker = _breaker(name)
        if breaker.current_state != pybreaker.STATE_OPEN:
            return False
    except RedisError:
        return False
    opened_at = breaker.storage.opened_at
    return opened_at is not None and (datetime.now(UTC) - opened_at).total_seconds() < breaker.reset_timeout


def breaker_names() -> list[str]:
    """Every breaker this deployment uses: mail, and one per enabled payment provider."""
    return ["mail", *(f"payment:{provider}" for provider in settings.PAYMENT_PROVIDERS)]


def breaker_states() -> dict[str, str]:
    """Each breaker's state, "closed", "open" or "half-open" (for metrics). An
    open breaker reads "open" until a call after its reset_timeout tries again.
    Raises RedisError when Redis is unreachable."""
    return {name: _breaker(name).current_state for name in breaker_names()}
