"""Suite-wide fixtures: the real MariaDB, Redis and RabbitMQ, isolated by name,
key prefix and virtual host."""

import pytest
from django.conf import settings

from cardshop.broker import broker_is_redis

# The browser tests' fixtures: headless Chromium, served static files, screenshots.
pytest_plugins = ["testing.browser"]


def _redis_client():
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def pytest_configure(config):
    import redis

    url = settings.REDIS_URL
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as exc:
        raise pytest.UsageError(
            f"Redis is not reachable at {url} ({exc}). Start it with scripts/ensure_services.sh or set REDIS_URL."
        ) from exc
    if not broker_is_redis(settings.CELERY_BROKER_URL):
        _broker_prepare()


def pytest_unconfigure(config):
    """The run's RabbitMQ virtual host goes with the run (testing.processes.rabbitmq_vhost_remove)."""
    if not broker_is_redis(settings.CELERY_BROKER_URL):
        from testing.processes import rabbitmq_vhost_remove

        connection = _broker["connection"]
        if connection is not None:
            connection.release()
        rabbitmq_vhost_remove(settings.CELERY_BROKER_URL)


def _broker_prepare():
    """The run's own RabbitMQ virtual host (created on the local broker when
    missing), with the task queues and the delayed-delivery queues a worker
    declares at start, so tests that publish before any worker ran, and the
    purge between tests, find them."""
    from testing.processes import ProcessFailed, rabbitmq_queues_declare, rabbitmq_vhost_ensure

    try:
        rabbitmq_vhost_ensure(settings.CELERY_BROKER_URL)
    except ProcessFailed as exc:
        raise pytest.UsageError(str(exc)) from exc
    rabbitmq_queues_declare(settings.CELERY_BROKER_URL, settings.CELERY_TASK_QUEUES)


_broker = {"connection": None}


def _broker_purge():
    """Drop the messages earlier tests left in the run's queues (no worker ran
    to take them); a worker a later test starts must not run them."""
    from kombu import Connection

    connection = _broker["connection"]
    if connection is None:
        connection = _broker["connection"] = Connection(settings.CELERY_BROKER_URL, connect_timeout=5)
    try:
        channel = connection.default_channel
        for queue in settings.CELERY_TASK_QUEUES:
            channel.queue_purge(queue.name)
    except Exception:
        # A test may have left this connection broken: once more on a new one.
        _broker["connection"] = None
        try:
            connection.release()
        except Exception:  # already broken: nothing to close cleanly
            pass
        connection = _broker["connection"] = Connection(settings.CELERY_BROKER_URL, connect_timeout=5)
        for queue in settings.CELERY_TASK_QUEUES:
            connection.default_channel.queue_purge(queue.name)


def _delete_prefixed_keys():
    from apps.stock.redis import stock_redis

    pattern = settings.REDIS_KEY_PREFIX + ":*"
    clients = [_redis_client()]
    if settings.GATE_REDIS_URL != settings.REDIS_URL or settings.GATE_REDIS_CLUSTER:
        clients.append(stock_redis())  # the gate on a server of its own (scan_iter covers a cluster's masters)
    for client in clients:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)  # a cluster client splits it by slot


@pytest.fixture(autouse=True)
def clean_redis():
    """Every test starts with none of the suite's Redis keys (others' keys
    untouched), and, on RabbitMQ, with the run's task queues empty (on the
    Redis broker the queues are keys of the prefix too)."""
    _delete_prefixed_keys()
    if not broker_is_redis(settings.CELERY_BROKER_URL):
        _broker_purge()
    yield
    _delete_prefixed_keys()


@pytest.fixture(autouse=True)
def _payment_methods_read_afresh():
    """The merchant's payment method rows are kept per process for half a
    minute; each test starts from its own database."""
    from apps.payments.selectors import payment_method_choices_forget

    payment_method_choices_forget()
    yield
    payment_method_choices_forget()


@pytest.fixture(autouse=True)
def _order_status_drops_resumed():
    """A drop that failed pauses the process's drops a few seconds; each test
    starts (and leaves) with them running."""
    from apps.orders.status_records import order_status_drops_resume

    order_status_drops_resume()
    yield
    order_status_drops_resume()


@pytest.fixture(autouse=True)
def _shop_settings_read_afresh():
    """The shop settings are kept per process for a few seconds; each test
    starts from its own database (a rolled-back save leaves no copy behind)."""
    from apps.core.selectors import shop_settings_memo_forget

    shop_settings_memo_forget()
    yield
    shop_settings_memo_forget()


@pytest.fixture(autouse=True)
def _replica_reads_see_the_test_transaction(request):
    """A non-transactional test writes inside a transaction that the separate
    replica connection cannot see; pin its reads to the primary. Tests marked
    django_db(transaction=True) commit for real and read the replica as
    production does."""
    from cardshop.db_router import primary_reads

    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))
    uses_db = marker is not None or "db" in request.fixturenames
    if not uses_db or transactional or "live_server" in request.fixturenames:
        yield
        return
    with primary_reads():
        yield


def pytest_collection_modifyitems(items):
    """Let every database test use the replica alias too (it mirrors default in
    tests), so routed catalog reads are allowed without repeating it per test."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None or "databases" in marker.kwargs:
            continue
        kwargs = dict(marker.kwargs, databases="__all__")
        item.add_marker(pytest.mark.django_db(*marker.args, **kwargs), append=False)


@pytest.fixture
def celery_eager():
    """Tasks run in-process at .delay() (after commit, for delay_on_commit):
    service-level flows without a worker process."""
    from cardshop.celery import app as celery_app

    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_eager_propagates = False
