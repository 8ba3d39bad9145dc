"""Within the stale window after a catalog edit (docs/database-replica.md,
"The catalog cache and the replica"), the cache misses of a hot product must
not all reach MariaDB: whoever reads it, each process reads it about once.

A replica is configured (REPLICA_ENABLED) with its status answered by the
test; the replica alias is the test database's mirror, so queries on both
aliases are counted."""

import time

import pytest
from django.core.cache import cache
from django.db import connections
from django.test.utils import CaptureQueriesContext
from redis.exceptions import ConnectionError as RedisConnectionError

from apps.catalog import selectors
from apps.catalog.selectors import EDITED_AT_CACHE_KEY, product_cache_key, product_info_get
from apps.catalog.tests.factories import ProductFactory
from cardshop.db_router import primary_reads, replica_reads_allowed

VIEWS = 50
# One product read: the product with its category, then its tiers and fields.
QUERIES_PER_READ = 3


@pytest.fixture
def replica(settings, monkeypatch):
    """A replica configured; state["status"] is what SHOW SLAVE STATUS says."""
    from apps.core import replica as replica_module

    settings.REPLICA_ENABLED = True
    settings.REPLICA_CHECK_SECONDS = 60
    state = {"status": {"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": 0}}
    monkeypatch.setattr(replica_module, "_replica_status", lambda: state["status"])
    replica_module.replica_health.forget()
    yield state
    replica_module.replica_health.forget()


@pytest.fixture
def edited_product(replica):
    """A product edited just now (within the stale window), not cached."""
    product = ProductFactory()
    for key in (product_cache_key(product.sku),):
        cache.delete(key)
        selectors.cache_forget([key])
    cache.set(EDITED_AT_CACHE_KEY, time.time(), timeout=60)
    yield product
    cache.delete(EDITED_AT_CACHE_KEY)
    cache.delete(product_cache_key(product.sku))
    selectors.cache_forget([product_cache_key(product.sku)])


def _views(sku: str) -> tuple[int, int]:
    """VIEWS product reads; the queries they made on (default, replica)."""
    with (
        CaptureQueriesContext(connections["default"]) as on_primary,
        CaptureQueriesContext(connections["replica"]) as on_replica,
    ):
        for _ in range(VIEWS):
            assert product_info_get(sku=sku) is not None
    return len(on_primary), len(on_replica)


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_with_the_replica_unfit_a_miss_read_from_the_primary_is_cached(edited_product, replica):
    replica["status"] = None  # not replicating: every reader reads the primary, which is never stale
    with replica_reads_allowed():
        on_primary, on_replica = _views(edited_product.sku)
    assert (on_primary, on_replica) == (QUERIES_PER_READ, 0)
    assert cache.get(product_cache_key(edited_product.sku)) is not None


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_a_reader_who_wrote_reads_the_primary_once_per_process_and_does_not_fill_the_cache(edited_product):
    with replica_reads_allowed(), primary_reads():  # read-your-writes (apps.core.middleware)
        on_primary, on_replica = _views(edited_product.sku)
    assert (on_primary, on_replica) == (QUERIES_PER_READ, 0)
    # Buyers see the edit when the replica has it, not because its author looked.
    assert cache.get(product_cache_key(edited_product.sku)) is None
    # Nor does a replica reader get the author's copy.
    with replica_reads_allowed(), CaptureQueriesContext(connections["replica"]) as on_replica:
        product_info_get(sku=edited_product.sku)
    assert len(on_replica) == QUERIES_PER_READ


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_a_replica_reader_reads_the_replica_once_per_process_within_the_window(edited_product):
    with replica_reads_allowed():
        on_primary, on_replica = _views(edited_product.sku)
    assert (on_primary, on_replica) == (0, QUERIES_PER_READ)
    assert cache.get(product_cache_key(edited_product.sku)) is None


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_with_redis_down_each_process_keeps_its_last_good_copy(edited_product, monkeypatch):
    """The edit marker cannot be read either: a miss is remembered by the
    process (CATALOG_FALLBACK_SECONDS), not read again on every view."""

    def unreachable(*args, **kwargs):
        raise RedisConnectionError("down")

    monkeypatch.setattr(cache, "get", unreachable)
    monkeypatch.setattr(cache, "set", unreachable)
    for route in (replica_reads_allowed, primary_reads):
        selectors.cache_forget([product_cache_key(edited_product.sku)])
        with route():
            on_primary, on_replica = _views(edited_product.sku)
        assert on_primary + on_replica == QUERIES_PER_READ, (route.__name__, on_primary, on_replica)
