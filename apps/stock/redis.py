"""The stock gate's Redis client: a plain Redis, or a Redis Cluster.

The gate (stock counters, reservations, persist queues, coupon uses, mail
claims, the run-id markers) lives on GATE_REDIS_URL, which defaults to
REDIS_URL; the cache, sessions, rate limits and breakers stay on REDIS_URL
through django-redis (docs/gate-cluster.md says why). With GATE_REDIS_CLUSTER
the client is redis-py's RedisCluster: each command goes to the master owning
its key's slot, so every multi-key command and every script call must name
keys of one slot only (one product's {p:<id>} or one coupon's {c:<id>})."""

import threading

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

# The same bounds django-redis gave the gate (CACHES["default"]["OPTIONS"]):
# a dead gate must cost a request a second, not hang it.
SOCKET_TIMEOUT = 1
SOCKET_CONNECT_TIMEOUT = 1
# A pooled connection idle this long is PINGed before use, so a gate that
# restarted meanwhile costs a reconnect, not a failed checkout.
HEALTH_CHECK_INTERVAL = 30

_clients: dict[tuple[str, bool], redis.Redis | RedisCluster] = {}
_clients_lock = threading.Lock()


def gate_redis_client(
    *, url: str, cluster: bool, socket_timeout: float = SOCKET_TIMEOUT, connect_timeout: float = SOCKET_CONNECT_TIMEOUT
) -> redis.Redis | RedisCluster:
    """A new client of the gate Redis at `url` (the caller closes it)."""
    options = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
    }
    if cluster:
        # No retries after a timeout or a lost connection: RedisCluster would
        # send the command again (ten times by default), and a checkout or a
        # stock adjustment whose reply was late would be applied again each
        # time. The caller gets the error and treats the outcome as unknown,
        # as with one Redis. MOVED, ASK and TRYAGAIN are still followed (the
        # client does that within one attempt).
        return RedisCluster.from_url(url, retry=Retry(NoBackoff(), 0), **options)
    return redis.Redis.from_url(url, **options)


def stock_redis() -> redis.Redis | RedisCluster:
    """The gate's client: one pooled client per process and configuration
    (a test that points the settings at another server gets another one)."""
    key = (settings.GATE_REDIS_URL, bool(settings.GATE_REDIS_CLUSTER))
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = gate_redis_client(url=key[0], cluster=key[1])
    return client


def gate_is_cluster(client) -> bool:
    return isinstance(client, RedisCluster)


def redis_text(value) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
