"""The stock gate's Redis client: a plain Redis, or a Redis Cluster.

The gate (stock counters, reservations, persist queues, coupon uses, mail
claims, the run-id markers) lives on GATE_REDIS_URL, which defaults to
REDIS_URL; the cache, sessions, rate limits and breakers stay on REDIS_URL
through django-redis (docs/gate-cluster.md says why). With GATE_REDIS_CLUSTER
the client is redis-py's RedisCluster: each command goes to the master owning
its key's slot, so every multi-key command and every script call must name
keys of one slot only (one product's {p:<id>} or one coupon's {c:<id>})."""

import threading
from concurrent.futures import ThreadPoolExecutor

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.exceptions import AskError, MovedError, RedisClusterException, TryAgainError
from redis.retry import Retry

# The same bounds django-redis gave the gate (CACHES["default"]["OPTIONS"]):
# a dead gate must cost a request a second, not hang it.
SOCKET_TIMEOUT = 1
SOCKET_CONNECT_TIMEOUT = 1
# A pooled connection idle this long is PINGed before use, so a gate that
# restarted meanwhile costs a reconnect, not a failed checkout.
HEALTH_CHECK_INTERVAL = 30
# Start-up of a cluster client only (keyless commands, safe to send again).
STARTUP_RETRIES = 3


class GateRedisCluster(RedisCluster):
    """RedisCluster whose "no node reachable" (RedisClusterException, not a
    RedisError, raised when its topology refresh finds no node) is a
    redis.ConnectionError: callers fail closed (503 sale_paused) as they do
    when a single Redis is down, instead of answering 500."""

    def execute_command(self, *args, **kwargs):
        try:
            return super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise redis.ConnectionError(f"gate cluster unreachable: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Commands without a key (TIME, COMMAND) go to a default node;
            # without retries RedisCluster would keep a dead one as default.
            # The command is not sent again: the next one goes elsewhere.
            failed, default = getattr(exc, "connection", None), self.get_default_node()
            if default is not None and (getattr(failed, "host", None), getattr(failed, "port", None)) == (
                default.host,
                default.port,
            ):
                self.replace_default_node()
            raise


# Replies that say the key's slot is served elsewhere (or is moving): the
# command did not run there, and the cluster client can follow the move.
SLOT_MOVED_ERRORS = (MovedError, AskError, TryAgainError)

_clients: dict[tuple[str, bool], redis.Redis | GateRedisCluster] = {}
_clients_lock = threading.Lock()


def gate_redis_client(
    *, url: str, cluster: bool, socket_timeout: float = SOCKET_TIMEOUT, connect_timeout: float = SOCKET_CONNECT_TIMEOUT
) -> redis.Redis | GateRedisCluster:
    """A new client of the gate Redis at `url` (the caller closes it). For a
    cluster `url` may list several nodes, comma-separated: the client starts
    from whichever answers. Raises redis.ConnectionError when none does."""
    options = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
    }
    if not cluster:
        return redis.Redis.from_url(url, **options)
    first, *more = (part.strip() for part in url.split(",") if part.strip())
    startup_nodes = [ClusterNode(parsed["host"], parsed.get("port", 6379)) for parsed in map(parse_url, more)]
    try:
        # No retries after a timeout or a lost connection: RedisCluster would
        # send the command again (ten times by default), and a checkout or a
        # stock adjustment whose reply was late would be applied again each
        # time. The caller gets the error and treats the outcome as unknown,
        # as with one Redis. MOVED, ASK and TRYAGAIN are still followed (the
        # client does that within one attempt).
        # Built with a few retries: its start-up COMMAND goes to a default
        # node, which may be a dead one (a retry picks another); then none.
        client = GateRedisCluster.from_url(
            first, startup_nodes=startup_nodes, retry=Retry(NoBackoff(), STARTUP_RETRIES), **options
        )
    except RedisClusterException as exc:
        raise redis.ConnectionError(f"no gate cluster node answered: {exc}") from exc
    client.set_retry(Retry(NoBackoff(), 0))
    return client


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


def gate_clients_forget() -> None:
    """Close and drop this process's gate clients: the next stock_redis()
    builds a new one, as a process starting now would (for the tests)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


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


def gate_masters_up(*, client=None) -> dict[str, bool]:
    """Each gate master ("host:port"; a single Redis: that one) and whether
    it answers PING now. All are asked at once, so a hung one costs one
    socket timeout in all, not one each. `client` defaults to the gate's."""
    client = stock_redis() if client is None else client
    if gate_is_cluster(client):
        targets = [(node.name, client.get_redis_connection(node)) for node in client.get_primaries()]
    else:
        options = client.connection_pool.connection_kwargs
        targets = [(f"{options.get('host', 'localhost')}:{options.get('port', 6379)}", client)]

    def answers(target) -> bool:
        try:
            return bool(target.ping())
        except redis.RedisError:
            return False

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return dict(zip((name for name, _ in targets), pool.map(answers, (t for _, t in targets)), strict=True))


def gate_error_before_sending(error: BaseException) -> bool:
    """Did this error come from connecting (refused, or no answer to the
    connect), so the command was never sent? A read timeout or a connection
    lost mid-reply may follow a command that ran: False for those. The first
    error of the chain decides (a cluster client's topology refresh may
    raise another on top of it)."""
    first = error
    while first.__context__ is not None and isinstance(first.__context__, redis.RedisError | RedisClusterException):
        first = first.__context__
    if first.__cause__ is not None and isinstance(first.__cause__, redis.RedisError):
        first = first.__cause__
    text = str(first)
    if isinstance(first, redis.TimeoutError):
        return text == "Timeout connecting to server"
    return isinstance(first, redis.ConnectionError) and text.startswith("Error ") and " connecting to " in text
