"""Checkout: one Redis round trip reserves (or refuses with a reason), no database write."""

from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from apps.catalog.selectors import product_info_get
from apps.orders.exceptions import (
    InvalidInput,
    LimitExceeded,
    ProductNotFound,
    SaleEnded,
    SaleNotStarted,
    SalePaused,
    SoldOut,
)
from apps.orders.models import Order
from apps.orders.selectors import order_snapshot_get
from apps.orders.services import persistence
from apps.orders.services.checkout import order_checkout
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key
from apps.stock.selectors import stock_remaining
from apps.stock.warmup import stock_warm

from .support import checkout, checkout_queued, pay, product_with_keys, redis_lose_product

pytestmark = pytest.mark.django_db(transaction=True)


def test_checkout_reserves_in_redis_only_then_persists(django_assert_num_queries):
    product = product_with_keys(keys=3)
    product_info_get(sku=product.sku)  # the page view cached it
    with django_assert_num_queries(0), django_assert_num_queries(0, connection=connections["replica"]):
        result = checkout(product, quantity=2)
    assert result.status == "queued"
    assert stock_remaining(product_id=product.id) == 1
    assert not Order.objects.filter(order_no=result.order_no).exists()
    snapshot = order_snapshot_get(order_no=result.order_no, token=result.access_token)
    assert snapshot["status"] == "queued" and snapshot["amount"] == "19.80"

    assert persistence.order_persist_queued() == 1
    order = Order.objects.get(order_no=result.order_no)
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert order.amount == Decimal("19.80") and order.buyer_email == "buyer@example.com"
    # Persisting again (a redelivered batch) changes nothing.
    assert persistence.order_persist_reservations(product_id=product.id, reservations=[]) == 0
    assert persistence.order_persist_queued() == 0
    assert Order.objects.count() == 1


def test_wrong_token_sees_nothing():
    product = product_with_keys(keys=1)
    result = checkout(product)
    assert order_snapshot_get(order_no=result.order_no, token="nope") is None
    persistence.order_persist_queued()
    assert order_snapshot_get(order_no=result.order_no, token="") is None
    assert order_snapshot_get(order_no="bogus", token=result.access_token) is None


@pytest.mark.parametrize(
    ("email", "quantity", "field"),
    [
        ("not-an-email", 1, "email"),
        ("a" * 250 + "@b.co", 1, "email"),
        ("a@b.co", 0, "quantity"),
        ("a@b.co", "two", "quantity"),
        ("a@b.co", 1.5, "quantity"),
        ("a@b.co", True, "quantity"),
        ("a@b.co", None, "quantity"),
        ("a@b.co", 9, "quantity"),
    ],
)
def test_bad_input_is_refused_and_reserves_nothing(email, quantity, field):
    product = product_with_keys(keys=10, max_per_order=5)
    with pytest.raises(InvalidInput) as caught:
        order_checkout(sku=product.sku, email=email, quantity=quantity)
    assert field in caught.value.extra["fields"]
    assert stock_remaining(product_id=product.id) == 10


def test_unknown_or_inactive_product():
    with pytest.raises(ProductNotFound):
        order_checkout(sku="nope", email="a@b.co", quantity=1)
    product = product_with_keys(keys=1, is_active=False)
    with pytest.raises(ProductNotFound):
        checkout(product)


def test_sold_out_and_limit():
    product = product_with_keys(keys=3, per_buyer_limit=2)
    checkout(product, email="A@x.com ", quantity=2)
    with pytest.raises(LimitExceeded):
        checkout(product, email="a@x.com")  # same buyer after normalising
    checkout(product, email="b@x.com")
    with pytest.raises(SoldOut):
        checkout(product, email="c@x.com")


def test_sale_window():
    soon = product_with_keys(keys=1, sale_starts_at=timezone.now() + timezone.timedelta(hours=1))
    with pytest.raises(SaleNotStarted):
        checkout(soon)
    over = product_with_keys(keys=1, sale_ends_at=timezone.now() - timezone.timedelta(seconds=1))
    with pytest.raises(SaleEnded):
        checkout(over)


def test_not_warmed_pauses_and_warm_reopens():
    product = product_with_keys(keys=2, warm=False)
    with pytest.raises(SalePaused):
        checkout(product)

    assert stock_warm(product=product) == (True, 2)
    assert checkout(product).status == "queued"


def test_idempotency_key_returns_the_first_order():
    product = product_with_keys(keys=5)
    first = checkout(product, key="k-1")
    second = checkout(product, key="k-1")
    assert (second.order_no, second.access_token) == (first.order_no, first.access_token)
    assert stock_remaining(product_id=product.id) == 4
    other_buyer = checkout(product, email="other@x.com", key="k-1")
    assert other_buyer.order_no != first.order_no


def test_rules_follow_a_merchant_edit():
    product = product_with_keys(keys=3, per_buyer_limit=5)
    product.per_buyer_limit = 1
    product.save()
    checkout(product)
    with pytest.raises(LimitExceeded):
        checkout(product)


def test_redis_lost_pauses_then_warm_restores_without_oversell(celery_eager):
    product = product_with_keys(keys=3)
    a = checkout(product, email="a@x.com")
    persistence.order_persist_queued()
    checkout_queued(product, email="b@x.com")  # queued only: lost with Redis
    client = stock_redis()
    redis_lose_product(product)
    with pytest.raises(SalePaused):
        checkout(product, email="c@x.com")

    assert stock_warm(product=product) == (True, 2)  # 3 keys - a's reservation
    assert int(client.get(stock_key(product.id))) == 2
    pay(a.order_no)
    assert Order.objects.get(order_no=a.order_no).status == Order.Status.DELIVERED


def test_redis_holds_no_access_token():
    product = product_with_keys(keys=2)
    result = checkout(product, key="k-9")
    client = stock_redis()
    for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:*"):
        kind = client.type(key).decode()
        values = {
            "string": lambda name: [client.get(name)],
            "hash": lambda name: list(client.hgetall(name).values()),
            "list": lambda name: client.lrange(name, 0, -1),
        }.get(kind, lambda name: [])(key)
        assert not any(result.access_token.encode() in v for v in values), key
    assert checkout(product, key="k-9").access_token == result.access_token
