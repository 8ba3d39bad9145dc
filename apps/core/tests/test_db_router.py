import pytest
from django.db import connections

from apps.catalog.models import Product
from apps.catalog.tests.factories import ProductFactory
from apps.orders.models import Order
from cardshop.db_router import PrimaryReplicaRouter, primary_reads

router = PrimaryReplicaRouter()


def test_catalog_reads_go_to_the_replica():
    assert router.db_for_read(Product) == "replica"


def test_order_reads_stay_on_the_primary():
    assert router.db_for_read(Order) == "default"


def test_every_write_goes_to_the_primary():
    assert router.db_for_write(Product) == "default"
    assert router.db_for_write(Order) == "default"


def test_primary_reads_pins_catalog_reads():
    with primary_reads():
        assert router.db_for_read(Product) == "default"
    assert router.db_for_read(Product) == "replica"


def test_migrations_run_on_the_primary_only():
    assert router.allow_migrate("default", "catalog")
    assert not router.allow_migrate("replica", "catalog")


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_queryset_uses_replica_alias_and_mirror_sees_the_committed_write():
    ProductFactory(sku="R1")
    qs = Product.objects.filter(sku="R1")
    assert qs.db == "replica"
    assert qs.exists()  # the test replica mirrors default


def test_post_request_reads_from_the_primary():
    seen = []
    original = router.db_for_read

    def spy(model, **hints):
        alias = original(model, **hints)
        seen.append(alias)
        return alias

    from apps.core.middleware import PrimaryReadsForWritesMiddleware

    def view(request):
        return spy(Product)

    middleware = PrimaryReadsForWritesMiddleware(view)

    class Req:
        method = "POST"

    assert middleware(Req()) == "default"
    Req.method = "GET"
    assert middleware(Req()) == "replica"
    assert connections["replica"].settings_dict["NAME"] == connections["default"].settings_dict["NAME"]
