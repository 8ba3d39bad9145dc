"""Per-client rate limits on checkout, order lookup and payment, and the client
IP they count by. Real Redis (the counters) and MariaDB."""

import json
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import pytest
from django.test import Client, RequestFactory
from django.utils import translation
from django.utils.translation import gettext
from redis.exceptions import ConnectionError as RedisConnectionError

from apps.core.client_ip import client_ip
from apps.core.ratelimits import CHECKOUT_IP, limits_check
from apps.orders.models import Order
from apps.orders.services.persistence import order_persist_queued
from apps.orders.tests.factories import OrderFactory
from apps.orders.tests.support import product_with_keys
from apps.stock.selectors import stock_remaining


@pytest.fixture(autouse=True)
def _limits(settings):
    """Known limits, whatever the environment running the suite says."""
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMIT_CHECKOUT_IP = "30/m"
    settings.RATELIMIT_CHECKOUT_BUYER = "10/m"
    settings.RATELIMIT_LOOKUP_IP = "10/m"
    settings.RATELIMIT_PAY_IP = "30/m"
    settings.TRUSTED_PROXY_IP_HEADER = ""
    settings.TRUSTED_PROXY_COUNT = 1


@pytest.fixture(autouse=True)
def _one_rate_window():
    """django-ratelimit counts in fixed windows; a test whose requests straddle
    a window's end would see its count restart. Its clock stands still here."""
    import time

    now = time.time()
    with mock.patch("django_ratelimit.core.time", mock.Mock(time=lambda: now)):
        yield


def api_checkout(client, product, email, **extra):
    return client.post(
        "/api/v1/orders",
        data=json.dumps({"sku": product.sku, "quantity": 1, "email": email}),
        content_type="application/json",
        **extra,
    )


# --- the client IP


def _request(remote_addr="10.0.0.9", **headers):
    return RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers)


def test_without_a_trusted_header_a_spoofed_forwarded_for_is_ignored():
    request = _request(HTTP_X_FORWARDED_FOR="1.2.3.4", HTTP_X_REAL_IP="5.6.7.8")
    assert client_ip(request) == "10.0.0.9"


@pytest.mark.parametrize(
    ("forwarded", "hops", "expected"),
    [
        ("203.0.113.7", 1, "203.0.113.7"),
        # The client wrote the leftmost entry; our one proxy appended the real address.
        ("1.2.3.4, 203.0.113.7", 1, "203.0.113.7"),
        # Two proxies of ours (a CDN, then nginx): the second entry from the right.
        ("1.2.3.4, 203.0.113.7, 198.51.100.2", 2, "203.0.113.7"),
        # Fewer entries than hops: every entry was written by one of our proxies.
        ("203.0.113.7", 2, "203.0.113.7"),
        ("2001:db8::1", 1, "2001:db8::1"),
        # Garbage where an address belongs: the direct peer, never the garbage.
        ("1.2.3.4, not-an-ip", 1, "10.0.0.9"),
        ("", 1, "10.0.0.9"),
    ],
)
def test_the_trusted_header_is_read_from_the_right(settings, forwarded, hops, expected):
    settings.TRUSTED_PROXY_IP_HEADER = "X-Forwarded-For"
    settings.TRUSTED_PROXY_COUNT = hops
    assert client_ip(_request(HTTP_X_FORWARDED_FOR=forwarded)) == expected


def test_a_single_value_header_like_x_real_ip(settings):
    settings.TRUSTED_PROXY_IP_HEADER = "X-Real-IP"
    assert client_ip(_request(HTTP_X_REAL_IP="203.0.113.7", HTTP_X_FORWARDED_FOR="1.2.3.4")) == "203.0.113.7"
    assert client_ip(_request()) == "10.0.0.9"


@pytest.mark.django_db
def test_rotating_a_spoofed_header_does_not_escape_the_ip_limit(client, settings):
    settings.RATELIMIT_CHECKOUT_IP = "3/m"
    product = product_with_keys(keys=10, per_buyer_limit=10, max_unpaid_per_buyer=10)
    codes = [
        api_checkout(client, product, f"b{i}@example.com", HTTP_X_FORWARDED_FOR=f"1.2.3.{i}").status_code
        for i in range(5)
    ]
    assert codes == [202, 202, 202, 429, 429]


@pytest.mark.django_db
def test_behind_a_trusted_proxy_each_client_has_its_own_budget(client, settings):
    settings.RATELIMIT_CHECKOUT_IP = "2/m"
    settings.TRUSTED_PROXY_IP_HEADER = "X-Forwarded-For"
    product = product_with_keys(keys=10, per_buyer_limit=10, max_unpaid_per_buyer=10)
    # Every request comes from the proxy's address (REMOTE_ADDR 127.0.0.1).
    first = [api_checkout(client, product, f"a{i}@example.com", HTTP_X_FORWARDED_FOR="203.0.113.1") for i in range(3)]
    second = api_checkout(client, product, "b@example.com", HTTP_X_FORWARDED_FOR="203.0.113.2")
    assert [r.status_code for r in first] == [202, 202, 429]
    assert second.status_code == 202


# --- checkout


@pytest.mark.django_db
def test_over_the_ip_limit_the_api_answers_429_with_retry_after_and_reserves_nothing(client, settings):
    settings.RATELIMIT_CHECKOUT_IP = "3/m"
    product = product_with_keys(keys=10, per_buyer_limit=10, max_unpaid_per_buyer=10)
    for i in range(3):
        assert api_checkout(client, product, f"b{i}@example.com").status_code == 202
    assert stock_remaining(product_id=product.id) == 7

    response = api_checkout(client, product, "another@example.com", HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "rate_limited"
    assert body["detail"] == "Too many requests. Please wait a moment and try again."
    assert 1 <= int(response["Retry-After"]) <= 60
    assert stock_remaining(product_id=product.id) == 7


@pytest.mark.django_db
def test_the_buyer_limit_counts_one_email_across_addresses_and_case(settings):
    settings.RATELIMIT_CHECKOUT_BUYER = "2/m"
    product = product_with_keys(keys=10, per_buyer_limit=10, max_unpaid_per_buyer=10)
    codes = [
        api_checkout(Client(REMOTE_ADDR=f"10.1.0.{i}"), product, email).status_code
        for i, email in enumerate(["Same@Example.com", " same@example.com", "SAME@example.COM"])
    ]
    assert codes == [202, 202, 429]
    assert api_checkout(Client(REMOTE_ADDR="10.1.0.9"), product, "other@example.com").status_code == 202


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_storefront_form_over_its_limit_gets_a_translated_429_page(client, settings, language):
    settings.RATELIMIT_CHECKOUT_BUYER = "1/m"
    product = product_with_keys(keys=10, per_buyer_limit=10, max_unpaid_per_buyer=10)
    form = {"email": "a@example.com", "quantity": "1"}
    assert client.post(f"/p/{product.sku}/buy", form, HTTP_ACCEPT_LANGUAGE=language).status_code == 302

    response = client.post(f"/p/{product.sku}/buy", form, HTTP_ACCEPT_LANGUAGE=language)

    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    html = response.content.decode()
    with translation.override(language):
        assert gettext("Please slow down") in html
        assert f'lang="{language}"' in html
    assert stock_remaining(product_id=product.id) == 9


@pytest.mark.django_db(transaction=True)
def test_one_client_firing_500_checkouts_gets_at_most_the_per_buyer_limit():
    """One script, one address, one email, 500 requests from 20 threads at a
    product with a per-buyer limit of 2: two orders, every other answer a
    refusal with a stable code, and nothing else reserved."""
    product = product_with_keys(keys=50, per_buyer_limit=2, max_unpaid_per_buyer=2)

    def fire(i):
        response = api_checkout(Client(), product, "scalper@example.com")
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(fire, range(500)))

    accepted = {body["order_no"] for status, body in answers if status == 202}
    refusals = [body["error"] for status, body in answers if status != 202]
    assert len(accepted) == 2
    assert set(refusals) == {"limit_exceeded", "rate_limited"}
    assert len(refusals) == 498
    assert stock_remaining(product_id=product.id) == 48
    order_persist_queued(product_ids=[product.id])
    assert Order.objects.filter(product=product).count() == 2


@pytest.mark.django_db
def test_ratelimit_enable_false_turns_client_limits_off_but_the_purchase_limit_holds(client, settings):
    settings.RATELIMIT_ENABLE = False
    settings.RATELIMIT_CHECKOUT_IP = "1/m"
    settings.RATELIMIT_CHECKOUT_BUYER = "1/m"
    product = product_with_keys(keys=20, per_buyer_limit=2, max_unpaid_per_buyer=2)

    answers = [api_checkout(client, product, "bench@example.com") for _ in range(10)]

    assert [r.status_code for r in answers] == [202, 202] + [409] * 8
    assert {r.json()["error"] for r in answers[2:]} == {"limit_exceeded"}
    assert stock_remaining(product_id=product.id) == 18


@pytest.mark.django_db
def test_an_empty_rate_turns_that_one_limit_off(client, settings):
    settings.RATELIMIT_CHECKOUT_IP = ""
    settings.RATELIMIT_CHECKOUT_BUYER = ""
    # 35 unpaid orders from one address: over the per-address cap (test_hoarding.py).
    settings.UNPAID_CAP_PER_IP = 0
    product = product_with_keys(keys=40, per_buyer_limit=40, max_unpaid_per_buyer=40)
    assert {api_checkout(client, product, f"b{i}@example.com").status_code for i in range(35)} == {202}


def test_without_redis_the_limits_let_the_request_through(rf):
    request = rf.post("/api/v1/orders", REMOTE_ADDR="10.0.0.1")
    with mock.patch("apps.core.ratelimits.get_usage", side_effect=RedisConnectionError("down")):
        assert limits_check(request=request, limits=[CHECKOUT_IP]) is None


# --- order lookup


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_order_lookup_is_limited_per_ip_but_showing_the_form_is_not(client, settings, language):
    settings.RATELIMIT_LOOKUP_IP = "2/m"
    for _ in range(5):
        assert client.get("/orders/lookup").status_code == 200
    guesses = [
        client.post(
            "/orders/lookup",
            {"order_no": f"261122-1-GUESS{i}", "email": "x@example.com"},
            HTTP_ACCEPT_LANGUAGE=language,
        )
        for i in range(3)
    ]
    assert [r.status_code for r in guesses] == [200, 200, 429]
    assert "Retry-After" in guesses[2]
    with translation.override(language):
        assert gettext("Please slow down") in guesses[2].content.decode()


# --- payment endpoints


@pytest.mark.django_db
def test_the_pay_api_and_page_share_a_per_ip_limit(client, settings, sandbox_sent):
    settings.RATELIMIT_PAY_IP = "2/m"
    order, token = OrderFactory.create_with_token()
    url = f"/api/v1/payments/sandbox/{order.order_no}/pay"
    assert client.post(url, HTTP_X_ORDER_TOKEN=token).status_code == 202
    assert client.post(f"/pay/sandbox/{order.order_no}?token={token}", {"cancel": "1"}).status_code == 302

    over = client.post(url, HTTP_X_ORDER_TOKEN=token)
    page = client.post(f"/pay/sandbox/{order.order_no}?token={token}", {"pay": "1"})

    assert over.status_code == 429 and over.json()["error"] == "rate_limited" and "Retry-After" in over
    assert page.status_code == 429 and "Retry-After" in page
    # Viewing the pay page is not limited.
    assert client.get(f"/pay/sandbox/{order.order_no}?token={token}").status_code == 200


def test_the_webhook_is_never_limited_per_client(client, settings):
    settings.RATELIMIT_PAY_IP = "1/m"
    answers = {
        client.post("/payments/webhook/sandbox", data=b"{}", content_type="application/json").status_code
        for _ in range(5)
    }
    assert answers == {400}  # refused for its missing signature, never 429


@pytest.fixture
def sandbox_sent():
    from apps.payments.sandbox_server import sandbox_notification_deliver_task

    with mock.patch.object(sandbox_notification_deliver_task, "delay") as delay:
        yield delay
