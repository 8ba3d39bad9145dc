"""The storefront's refresh storm never reaches MariaDB once the cache is warm,
and a merchant's edit shows on the next view."""

from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connections
from django.test.utils import CaptureQueriesContext

from apps.catalog.selectors import catalog_listing_get, product_cache_key, product_info_get
from apps.catalog.tests.factories import CategoryFactory, ProductFactory


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_refreshing_pages_makes_no_database_query(client, set_stock, django_assert_num_queries):
    product = ProductFactory()
    set_stock(product, 50)
    urls = ["/", f"/c/{product.category.slug}", f"/p/{product.sku}", "/p/NO-SUCH-SKU"]
    # The first views fill the cache from the replica, as in production.
    with CaptureQueriesContext(connections["replica"]) as first_views:
        for url in urls:
            client.get(url)
    assert len(first_views) > 0
    for url in urls:
        with (
            django_assert_num_queries(0),
            django_assert_num_queries(0, connection=connections["replica"]),
        ):
            response = client.get(url)
        assert response.status_code in (200, 404)


@pytest.mark.django_db
class TestInvalidation:
    def test_title_change_shows_on_the_next_view(self, client):
        product = ProductFactory(title="Old title")
        assert "Old title" in client.get(f"/p/{product.sku}").content.decode()
        assert "Old title" in client.get("/").content.decode()
        product.title = "New title"
        product.save()
        assert "New title" in client.get(f"/p/{product.sku}").content.decode()
        assert "New title" in client.get("/").content.decode()

    def test_changed_sku_drops_the_old_entry(self, client):
        product = ProductFactory(sku="OLD-SKU")
        assert client.get("/p/OLD-SKU").status_code == 200
        product.sku = "NEW-SKU"
        product.save()
        assert cache.get(product_cache_key("OLD-SKU")) is None
        assert client.get("/p/OLD-SKU").status_code == 404
        assert client.get("/p/NEW-SKU").status_code == 200

    def test_deactivate_and_delete(self, client):
        product = ProductFactory()
        assert client.get(f"/p/{product.sku}").status_code == 200
        product.is_active = False
        product.save()
        assert client.get(f"/p/{product.sku}").status_code == 404
        assert product.title not in client.get("/").content.decode()
        sku = product.sku
        product.delete()
        assert product_info_get(sku=sku) is None

    def test_unknown_sku_is_cached_until_it_is_created(self):
        assert product_info_get(sku="LATER") is None
        ProductFactory(sku="LATER", price=Decimal("5.00"))
        assert product_info_get(sku="LATER").price == Decimal("5.00")

    def test_category_rename_refreshes_listing_and_product(self, client):
        category = CategoryFactory(name="Old name")
        product = ProductFactory(category=category)
        assert product_info_get(sku=product.sku).category_name == "Old name"
        catalog_listing_get()
        category.name = "New name"
        category.save()
        assert product_info_get(sku=product.sku).category_name == "New name"
        assert "New name" in client.get(f"/p/{product.sku}").content.decode()
        assert catalog_listing_get()[0].name == "New name"


def test_a_merchant_edit_succeeds_while_redis_is_down(db, monkeypatch):
    from django.core.cache import cache
    from redis.exceptions import ConnectionError as RedisConnectionError

    from apps.catalog.models import Product

    product = ProductFactory()

    def unreachable(*args, **kwargs):
        raise RedisConnectionError("down")

    monkeypatch.setattr(cache, "delete_many", unreachable)
    product.title = "edited"
    product.save()  # no exception: the edit is stored
    assert Product.objects.get(pk=product.pk).title == "edited"
