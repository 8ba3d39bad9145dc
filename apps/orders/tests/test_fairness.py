"""Issue 4's rules in the checkout script: fairness against scalpers and
holding stock hostage, the page-time token, the endpoint cap, kill switch and
backlog pause. Real Redis and MariaDB, real threads where it is a crowd."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.utils import timezone

from apps.catalog.page_tokens import page_token_new
from apps.orders.exceptions import (
    LimitExceeded,
    PageTokenInvalid,
    RateLimited,
    SalePaused,
    TooFast,
    UnpaidLimit,
)
from apps.orders.models import Order
from apps.orders.services import expiry, payment, persistence
from apps.orders.services.checkout import BuyerContext, order_checkout
from apps.stock.selectors import stock_remaining

from .support import product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def checkout(product, email, buyer=None, quantity=1):
    return order_checkout(sku=product.sku, email=email, quantity=quantity, buyer=buyer)


def test_200_buyers_hold_at_most_one_unpaid_each_and_expiry_frees_the_stock():
    product = product_with_keys(keys=300, per_buyer_limit=10, max_unpaid_per_buyer=1)
    barrier = threading.Barrier(20)

    def buyer_tries_three_times(i):
        if i < 20:
            barrier.wait()
        outcomes = []
        for _ in range(3):
            try:
                checkout(product, f"holder{i}@x.com")
                outcomes.append("ok")
            except UnpaidLimit:
                outcomes.append("unpaid_limit")
        return outcomes

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(buyer_tries_three_times, range(200)))
    assert all(r == ["ok", "unpaid_limit", "unpaid_limit"] for r in results)
    assert stock_remaining(product_id=product.id) == 100

    persistence.order_persist_queued()
    assert expiry.order_expire_due(now=timezone.now() + timezone.timedelta(hours=1)) == 200
    assert stock_remaining(product_id=product.id) == 300
    # The slots are free again: the same buyer may reserve once more.
    checkout(product, "holder0@x.com")
    with pytest.raises(UnpaidLimit):
        checkout(product, "holder0@x.com")


def test_paying_frees_the_unpaid_slot(celery_eager):
    product = product_with_keys(keys=5, per_buyer_limit=5, max_unpaid_per_buyer=1)
    first = checkout(product, "a@x.com")
    with pytest.raises(UnpaidLimit):
        checkout(product, "a@x.com")
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=first.order_no)
    payment.order_mark_paid(
        order_no=order.order_no, provider="sandbox", event_id="e", amount=order.amount, currency="CNY"
    )
    assert checkout(product, "a@x.com").status == "queued"


def test_limit_counts_every_identity_the_merchant_turns_on():
    by_ip = product_with_keys(keys=10, per_buyer_limit=1, limit_by_ip=True)
    checkout(by_ip, "a@x.com", BuyerContext(ip="10.0.0.1"))
    with pytest.raises(LimitExceeded):
        checkout(by_ip, "b@x.com", BuyerContext(ip="10.0.0.1"))
    checkout(by_ip, "c@x.com", BuyerContext(ip="10.0.0.2"))

    by_device = product_with_keys(keys=10, per_buyer_limit=1, limit_by_device=True)
    checkout(by_device, "a@x.com", BuyerContext(device_id="dev-1"))
    with pytest.raises(LimitExceeded):
        checkout(by_device, "b@x.com", BuyerContext(device_id="dev-1"))
    # Dropping the cookie does not reset the count: cookie-less clients share one.
    checkout(by_device, "c@x.com", BuyerContext())
    with pytest.raises(LimitExceeded):
        checkout(by_device, "d@x.com", BuyerContext())

    by_account = product_with_keys(keys=10, per_buyer_limit=1, limit_by_account=True)
    checkout(by_account, "a@x.com", BuyerContext(account_id=7))
    with pytest.raises(LimitExceeded):
        checkout(by_account, "b@x.com", BuyerContext(account_id=7))

    email_only = product_with_keys(keys=10, per_buyer_limit=1)
    checkout(email_only, "a@x.com", BuyerContext(ip="10.0.0.9"))
    checkout(email_only, "b@x.com", BuyerContext(ip="10.0.0.9"))  # IP not counted here


def test_identity_limits_survive_a_redis_rebuild():
    product = product_with_keys(keys=10, per_buyer_limit=1, limit_by_ip=True, max_unpaid_per_buyer=1)
    checkout(product, "a@x.com", BuyerContext(ip="10.0.0.1"))
    persistence.order_persist_queued()
    from apps.stock.warmup import stock_warm

    from .support import redis_lose_product

    redis_lose_product(product)
    assert stock_warm(product=product) == (True, 9)
    with pytest.raises(LimitExceeded):
        checkout(product, "b@x.com", BuyerContext(ip="10.0.0.1"))


def test_page_token_missing_forged_too_young_or_valid():
    product = product_with_keys(keys=5, min_page_seconds=1)
    with pytest.raises(PageTokenInvalid):
        checkout(product, "a@x.com", BuyerContext(page_token=None))
    with pytest.raises(PageTokenInvalid):
        checkout(product, "a@x.com", BuyerContext(page_token=page_token_new(sku=product.sku) + "x"))
    other = product_with_keys(keys=1)
    with pytest.raises(PageTokenInvalid):
        checkout(product, "a@x.com", BuyerContext(page_token=page_token_new(sku=other.sku)))
    token = page_token_new(sku=product.sku)
    with pytest.raises(TooFast) as caught:
        checkout(product, "a@x.com", BuyerContext(page_token=token))
    assert caught.value.retry_after >= 1
    time.sleep(1.05)
    assert checkout(product, "a@x.com", BuyerContext(page_token=token)).status == "queued"
    assert stock_remaining(product_id=product.id) == 4


def test_page_token_through_the_api(client):
    import json

    product = product_with_keys(keys=5, min_page_seconds=1)
    body = {"sku": product.sku, "email": "a@x.com", "quantity": 1}
    refused = client.post("/api/v1/orders", json.dumps(body), content_type="application/json")
    assert refused.status_code == 400 and refused.json()["error"] == "page_token_invalid"
    token = client.get(f"/api/v1/products/{product.sku}").json()["page_token"]
    early = client.post(
        "/api/v1/orders", json.dumps(body), content_type="application/json", headers={"X-Page-Token": token}
    )
    assert early.json()["error"] == "too_fast"
    time.sleep(1.05)
    ok = client.post("/api/v1/orders", json.dumps({**body, "page_token": token}), content_type="application/json")
    assert ok.status_code == 202


def test_endpoint_cap_is_a_token_bucket_in_the_script(settings):
    settings.CHECKOUT_RATE_PER_SECOND = 5
    settings.CHECKOUT_RATE_BURST = 5
    product = product_with_keys(keys=100, per_buyer_limit=100, max_unpaid_per_buyer=100)
    accepted = refused = 0
    retry_after = None
    for i in range(12):
        try:
            checkout(product, f"b{i}@x.com")
            accepted += 1
        except RateLimited as error:
            refused += 1
            retry_after = error.retry_after
    assert 5 <= accepted <= 6 and refused == 12 - accepted and retry_after >= 1
    assert stock_remaining(product_id=product.id) == 100 - accepted
    time.sleep(1.0)
    checkout(product, "later@x.com")  # refilled


def test_kill_switch_pauses_one_product():
    product = product_with_keys(keys=5)
    other = product_with_keys(keys=5)
    product.sale_paused = True
    product.save()
    with pytest.raises(SalePaused):
        checkout(product, "a@x.com")
    checkout(other, "a@x.com")
    product.sale_paused = False
    product.save()
    checkout(product, "a@x.com")


def test_persistence_backlog_pauses_checkout(settings, client):
    import json

    settings.PERSIST_BACKLOG_LIMIT = 3
    product = product_with_keys(keys=10, per_buyer_limit=10, max_unpaid_per_buyer=10)
    for i in range(3):
        checkout(product, f"q{i}@x.com")
    response = client.post(
        "/api/v1/orders", json.dumps({"sku": product.sku, "email": "z@x.com"}), content_type="application/json"
    )
    assert response.status_code == 503 and response.json()["error"] == "sale_paused" and response["Retry-After"]
    persistence.order_persist_queued()
    checkout(product, "z@x.com")


def test_a_logged_in_buyer_is_counted_by_account_without_a_database_query(client, django_assert_num_queries):
    """The account comes from the session (in Redis), not from the user table."""
    from django.contrib.auth.models import User

    product = product_with_keys(keys=10, per_buyer_limit=1, limit_by_account=True)
    client.force_login(User.objects.create_user("buyer", password="pw-buyer-1"))
    assert client.get(f"/p/{product.sku}").status_code == 200  # the product info is cached, as in a sale

    def api_checkout(email):
        return client.post("/api/v1/orders", {"sku": product.sku, "email": email}, content_type="application/json")

    with django_assert_num_queries(0):
        assert api_checkout("first@x.com").status_code == 202
    refused = api_checkout("second@x.com")  # another email, the same account
    assert refused.status_code == 409 and refused.json()["error"] == "limit_exceeded"
