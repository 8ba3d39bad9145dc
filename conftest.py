"""Suite-wide fixtures: the real MariaDB and Redis, isolated by name and key prefix."""

import pytest
from django.conf import settings


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


def _delete_prefixed_keys():
    client = _redis_client()
    pattern = settings.REDIS_KEY_PREFIX + ":*"
    keys = list(client.scan_iter(match=pattern, count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def clean_redis():
    """Every test starts with none of the suite's Redis keys (others' keys untouched)."""
    _delete_prefixed_keys()
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
