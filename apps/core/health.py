"""Readiness checks: can this process serve a sale right now?

Each check is a function that returns nothing when its dependency answers and
raises when it does not. `READINESS_CHECKS` is the list /readyz runs, in order;
a later check (stock warmed for live sales) is added by appending to it.
Every check bounds its own wait, so a dead server makes /readyz answer 503
within a few seconds instead of hanging the probe.
"""

import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone
from kombu import Connection

from apps.catalog.models import Product
from apps.stock.redis import gate_commands_per_master, gate_is_cluster, gate_masters_up, gate_redis_client
from apps.stock.redis_keys import stock_key

logger = logging.getLogger(__name__)

# Seconds a check waits for a server before it counts as down.
CHECK_TIMEOUT = 2


def check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    # A fresh client, not the shared pool: the probe must see the server as a
    # new connection would, and must not wait on a pool another request holds.
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()


class GateClusterDown(Exception):
    pass


# Seconds the gate checks wait for a master: a hung one must not hold the
# probe (the masters are asked at once, so this is the whole wait).
GATE_CHECK_TIMEOUT = 1


def check_gate_redis() -> str | None:
    """The stock gate's Redis (GATE_REDIS_URL; the same server as REDIS_URL
    unless set). On a Redis Cluster: ready while at least one master
    answers. The products on a dead master fail closed on their own (503
    sale_paused), and taking every web process out of service for it would
    stop browsing, order pages and payment webhooks too; a dead master is
    reported here, in the log and by cardshop_gate_redis_master_up (its
    alert, GateRedisMasterDown). Returns that note, or None."""
    client = _gate_client()
    try:
        if not gate_is_cluster(client):
            client.ping()
            return None
        masters = gate_masters_up(client=client)
    finally:
        client.close()
    down = sorted(name for name, up in masters.items() if not up)
    if len(down) == len(masters):
        raise GateClusterDown(f"no gate master answers: {', '.join(down)}")
    if down:
        # Only the count in the answer (the probe is reachable from outside);
        # the addresses in the log and the metric.
        logger.warning("readiness: gate masters down: %s", ", ".join(down))
        return f"{len(down)} of {len(masters)} gate masters down"
    return None


def _gate_client():
    # A fresh client, as for check_redis. Raises redis.ConnectionError when
    # no listed node answers.
    return gate_redis_client(
        url=settings.GATE_REDIS_URL,
        cluster=settings.GATE_REDIS_CLUSTER,
        socket_timeout=GATE_CHECK_TIMEOUT,
        connect_timeout=GATE_CHECK_TIMEOUT,
    )


def check_broker() -> None:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT) as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=CHECK_TIMEOUT)


class StockNotWarmed(Exception):
    pass


def check_stock_warmed() -> None:
    """Every active product whose sale is open has its stock counter in the gate Redis;
    one without it refuses checkout (sale_paused) until warm_stock rebuilds it.
    Read from MariaDB, so a Redis that lost everything (the list of warmed
    products too) fails this check instead of passing it. Passes when no sale
    is open."""
    now = timezone.now()
    open_sales = list(
        Product.objects.using("default")
        .filter(is_active=True)
        .filter(Q(sale_starts_at__isnull=True) | Q(sale_starts_at__lte=now))
        .filter(Q(sale_ends_at__isnull=True) | Q(sale_ends_at__gt=now))
        .values_list("id", "sku")[:1000]
    )
    if not open_sales:
        return
    client = _gate_client()
    try:
        # Per master: a dead or hung master costs one timeout, and its
        # products (unknown, not missing) fail closed on their own; the
        # gate_redis check and cardshop_gate_redis_master_up say it is down.
        found = gate_commands_per_master([("EXISTS", stock_key(pid)) for pid, _sku in open_sales], client=client)
    finally:
        client.close()
    if all(isinstance(reply, redis.RedisError) for reply in found):
        raise found[0]  # no master (or the one Redis) answered: nothing is known
    missing = [sku for (_id, sku), reply in zip(open_sales, found, strict=True) if reply == 0]
    if missing:
        raise StockNotWarmed(f"open sales without stock in Redis: {', '.join(missing[:20])}")


READINESS_CHECKS: list[tuple[str, Callable[[], str | None]]] = [
    ("database", check_database),
    ("redis", check_redis),
    ("gate_redis", check_gate_redis),
    ("broker", check_broker),
    ("stock_warmed", check_stock_warmed),
]


def run_readiness_checks() -> dict[str, str]:
    """Each check's name mapped to "ok" (or "ok: <note>" when it passed with
    something to say) or the name of the error it raised.

    Only the error's class goes into the answer (the probe is reachable from
    outside); the full error is logged for the operator.
    """
    results = {}
    for name, check in READINESS_CHECKS:
        try:
            note = check()
        except Exception as exc:  # any failure means "not ready", whatever raised it
            logger.warning("readiness check %s failed: %r", name, exc)
            results[name] = f"error: {type(exc).__name__}"
        else:
            results[name] = "ok" if note is None else f"ok: {note}"
    return results
