"""/readyz: stock warmed for every open sale."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.orders.tests.support import product_with_keys, redis_lose_product


@pytest.mark.django_db
def test_ready_when_no_sale_needs_warming(client):
    product_with_keys(keys=2, warm=False, sale_starts_at=timezone.now() + timedelta(hours=1))
    product_with_keys(keys=2, warm=False, is_active=False)
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["stock_warmed"] == "ok"


@pytest.mark.django_db
def test_ready_when_every_open_sale_is_warmed(client):
    product_with_keys(keys=2)
    product_with_keys(keys=0)  # warmed empty: sold out is still warmed
    assert client.get("/readyz").json()["checks"]["stock_warmed"] == "ok"


@pytest.mark.django_db
def test_not_ready_while_an_open_sale_lost_its_stock_in_redis(client):
    warmed = product_with_keys(keys=2)
    lost = product_with_keys(keys=2)
    redis_lose_product(lost)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["stock_warmed"] == "error: StockNotWarmed"
    assert body["checks"]["redis"] == "ok"

    from apps.stock.warmup import stock_warm

    stock_warm(product=lost)
    assert client.get("/readyz").status_code == 200
    assert warmed.sku  # the warmed product never counted against readiness
