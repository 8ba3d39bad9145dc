"""Card key services besides import: void/unvoid, the gate following the pool, marking claimed keys sold."""

import io
import threading

import pytest
from django.db import connection, transaction

from apps.cardkeys.claims import cardkeys_claim, cardkeys_mark_sold
from apps.cardkeys.models import CardKey
from apps.cardkeys.services import cardkeys_import, cardkeys_unvoid, cardkeys_void
from apps.catalog.tests.factories import ProductFactory
from apps.orders.services import checkout, persistence
from apps.orders.tests.support import product_with_keys
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key

from .factories import CardKeyFactory
from .support import run_import

pytestmark = pytest.mark.django_db


# --- void / unvoid -------------------------------------------------------------


def test_void_and_unvoid_move_only_available_and_void_keys():
    product = ProductFactory()
    available = CardKeyFactory(product=product)
    other = CardKeyFactory(product=product)
    sold = CardKeyFactory(sold=True, product=product)
    ids = [available.pk, sold.pk]

    assert cardkeys_void(key_ids=ids) == 1
    assert cardkeys_void(key_ids=ids) == 0
    available.refresh_from_db(), sold.refresh_from_db(), other.refresh_from_db()
    assert (available.status, sold.status, other.status) == ("void", "sold", "available")

    assert cardkeys_unvoid(key_ids=[available.pk, sold.pk, other.pk]) == 1
    available.refresh_from_db(), sold.refresh_from_db()
    assert (available.status, sold.status) == ("available", "sold")
    assert sold.order_id is not None


# --- the stock gate follows the pool -------------------------------------------


def test_warmed_stock_counter_follows_imports_and_voids(django_capture_on_commit_callbacks):
    product = ProductFactory()
    other = ProductFactory()  # not warmed: its counter must stay absent
    redis = stock_redis()
    redis.set(stock_key(product.pk), 2)

    with django_capture_on_commit_callbacks(execute=True):
        report = run_import(product, b"W-1\nW-2\nW-3\nW-1\n")
    with django_capture_on_commit_callbacks(execute=True):
        run_import(other, b"X-1\n")
    assert int(redis.get(stock_key(product.pk))) == 2 + report.accepted
    assert redis.get(stock_key(other.pk)) is None

    ids = list(CardKey.objects.filter(product=product).values_list("id", flat=True)[:2])
    with django_capture_on_commit_callbacks(execute=True):
        cardkeys_void(key_ids=ids)
    assert int(redis.get(stock_key(product.pk))) == 3
    with django_capture_on_commit_callbacks(execute=True):
        cardkeys_unvoid(key_ids=ids[:1])
    assert int(redis.get(stock_key(product.pk))) == 4


@pytest.mark.django_db(transaction=True)
def test_an_import_does_not_stall_orders_of_the_product():
    """While a large import runs, orders of the same product still persist:
    the import must not hold the product row's lock (an order insert's
    foreign-key check would wait on it)."""

    product = product_with_keys(keys=5)
    checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    started, release = threading.Event(), threading.Event()

    class SlowSource(io.BytesIO):
        def read(self, *args):
            started.set()
            release.wait(10)
            return super().read(*args)

    def run_import():

        try:
            cardkeys_import(product=product, source=SlowSource(b"NEW-KEY-1\nNEW-KEY-2\n"), file_name="k.txt")
        finally:
            connection.close()

    worker = threading.Thread(target=run_import)
    worker.start()
    try:
        assert started.wait(10)
        with connection.cursor() as cursor:  # a blocked insert fails fast instead of waiting
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 2")
        assert persistence.order_persist_queued() == 1  # not blocked by the running import
    finally:
        release.set()
        worker.join(20)


# --- marking claimed keys sold ------------------------------------------------


def test_mark_sold_gives_each_order_its_keys_and_never_resells_a_sold_key():
    product = ProductFactory()
    already = CardKeyFactory(sold=True, product=product)
    first_order, second_order = (CardKeyFactory(sold=True, product=product, secret=f"OTHER-{n}").order for n in (1, 2))
    keys = [CardKeyFactory(product=product, secret=f"FREE-{n}") for n in range(3)]
    with transaction.atomic():
        claimed = cardkeys_claim(product_id=product.id, count=3)
        assert claimed == [k.id for k in keys]
        changed = cardkeys_mark_sold(
            assignments={first_order.id: claimed[:1], second_order.id: [*claimed[1:], already.id]}
        )
    assert changed == 3  # the key sold before is not counted, nor moved
    rows = {k.id: (k.status, k.order_id, k.sold_at is not None) for k in CardKey.objects.filter(product=product)}
    assert rows[keys[0].id] == ("sold", first_order.id, True)
    assert rows[keys[1].id] == rows[keys[2].id] == ("sold", second_order.id, True)
    assert rows[already.id][1] == already.order_id
