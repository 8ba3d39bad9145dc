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
from redis.exceptions import AskError, MovedError, TryAgainError
from redis.retry import Retry

# The same bounds django-redis gave the gate (CACHES["default"]["OPTIONS"]):
# a dead gate must cost a request a second, not hang it.
SOCKET_TIMEOUT = 1
SOCKET_CONNECT_TIMEOUT = 1
# A pooled connection idle this long is PINGed before use, so a gate that
# restarted meanwhile costs a reconnect, not a failed checkout.
HEALTH_CHECK_INTERVAL = 30

# Replies that say the key's slot is served elsewhere (or is moving): the
# command did not run there, and the cluster client can follow the move.
SLOT_MOVED_ERRORS = (MovedError, AskError, TryAgainError)

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


def gate_commands_per_master(commands: list[tuple], *, client=None) -> list:
    """Run commands (NAME, key, *args), each naming one key, in one pipeline
    per master (one pipeline on a plain Redis), each standing alone (no
    transaction). The replies in order; where a master did not answer, its
    commands' replies are the RedisError instead, so a dead or hung master
    makes only its own keys unknown and costs one socket timeout, not one
    per key. A command whose slot moved meanwhile (MOVED, ASK, TRYAGAIN)
    runs again alone through the cluster client, which follows the move:
    only for commands that are no-ops when run twice (reads, HSET, SET).
    `client` defaults to the gate's (stock_redis())."""
    client = stock_redis() if client is None else client
    replies: list = [None] * len(commands)
    if not gate_is_cluster(client):
        groups = [(client, list(range(len(commands))))]
    else:
        by_master: dict[str, tuple] = {}
        for index, (_name, key, *_args) in enumerate(commands):
            node = client.get_node_from_key(key)
            by_master.setdefault(node.name, (node, []))[1].append(index)
        groups = [(client.get_redis_connection(node), indexes) for node, indexes in by_master.values()]
    for connection, indexes in groups:
        try:
            pipe = connection.pipeline(transaction=False)
            for index in indexes:
                pipe.execute_command(*commands[index])
            answers = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            answers = [exc] * len(indexes)
        for index, reply in zip(indexes, answers, strict=True):
            if gate_is_cluster(client) and isinstance(reply, SLOT_MOVED_ERRORS):
                try:
                    reply = client.execute_command(*commands[index])
                except redis.RedisError as exc:
                    reply = exc
            replies[index] = reply
    return replies
