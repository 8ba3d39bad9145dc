"""The Celery broker's settings, which depend on its transport.

`CELERY_BROKER_URL` decides: amqp:// is RabbitMQ (production, docker-compose
and the test suite), redis:// is a Redis database (a laptop without RabbitMQ).
What only makes sense for one transport is set only for it, here, so the
settings modules (base, test) derive both from the URL they end up with.

No Django here: the settings import it before Django is configured.
"""

from urllib.parse import unquote, urlsplit

from kombu import Exchange, Queue

REDIS_SCHEMES = ("redis", "rediss", "redis+socket")


def broker_is_redis(url: str) -> bool:
    return urlsplit(url).scheme.lower() in REDIS_SCHEMES


def broker_vhost(url: str) -> str:
    """The RabbitMQ virtual host an amqp:// URL names ("/" when it names none)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def broker_transport_options(*, url: str, key_prefix: str, visibility_timeout: int) -> dict:
    if broker_is_redis(url):
        return {
            # Several environments share one Redis: the broker's keys carry the prefix too.
            "global_keyprefix": key_prefix + ":celery:",
            # The Redis transport has no acknowledgements of its own: with acks_late
            # a message taken by a worker that died is handed out again only after
            # this many seconds, and so is one that waits longer (a countdown).
            "visibility_timeout": visibility_timeout,
        }
    # RabbitMQ acknowledges each publish once the message is on its queues'
    # disks (quorum queues: on a majority of nodes): a task the web process
    # was told is queued is not lost with a broker that crashes a moment later.
    return {"confirm_publish": True}


def broker_queues(*, url: str, names: list[str]) -> list[Queue]:
    """The task queues. On RabbitMQ they are durable quorum queues (replicated,
    every message on disk) behind topic exchanges: Celery delays countdown and
    ETA tasks for quorum queues at the broker ("native delayed delivery"),
    which routes them back through the queue's exchange and supports only
    topic (or fanout) ones; with a direct exchange such a task would sit
    unacknowledged in a worker until its time came. Celery then also turns
    global QoS off by itself (worker_detect_quorum_queues), which quorum
    queues refuse."""
    if broker_is_redis(url):
        return [Queue(name) for name in names]
    return [
        Queue(name, Exchange(name, type="topic"), routing_key=name, queue_arguments={"x-queue-type": "quorum"})
        for name in names
    ]
