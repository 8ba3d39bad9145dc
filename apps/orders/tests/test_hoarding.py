"""Hoarding (issue 12): one address made 26 reservations holding 130 of 200
keys with email variants ("Hoarder+1@…"). Emails are normalised for the
limits and the idempotency key's scope, and one client address holds at most
UNPAID_CAP_PER_IP unpaid reservations per product, except from the networks
in UNPAID_CAP_EXEMPT_NETWORKS. Paying or expiry frees the slot."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.orders.exceptions import UnpaidLimit
from apps.orders.identity import email_normalise
from apps.orders.models import Order
from apps.orders.services import expiry, persistence
from apps.orders.services.checkout import BuyerContext, order_checkout
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key
from apps.stock.warmup import stock_warm

from .support import pay, product_with_keys, redis_lose_product

HOARDER_IP = "203.0.113.9"


@pytest.mark.parametrize(
    ("typed", "mailbox"),
    [
        ("Hoarder+1@Example.com", "hoarder@example.com"),
        ("  hoarder+shop+2@example.com ", "hoarder@example.com"),
        ("H.o.a.r.d.e.r+x@Gmail.com", "hoarder@gmail.com"),
        ("hoarder@googlemail.com", "hoarder@gmail.com"),
        # Dots matter elsewhere: another provider's "h.oarder" is another mailbox.
        ("h.oarder@example.com", "h.oarder@example.com"),
        ("no-at-sign", "no-at-sign"),
    ],
)
def test_email_normalise_gives_the_mailbox(typed, mailbox):
    assert email_normalise(typed) == mailbox


@pytest.fixture
def crowd_settings(settings):
    # The per-client rate limits would stop this crowd first; the cap is what is tested.
    settings.RATELIMIT_ENABLE = False
    settings.UNPAID_CAP_PER_IP = 5
    settings.UNPAID_CAP_EXEMPT_NETWORKS = []
    return settings


def buy(client, product, email, *, ip=HOARDER_IP, quantity=5, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(
        "/api/v1/orders",
        data=json.dumps({"sku": product.sku, "email": email, "quantity": quantity}),
        content_type="application/json",
        headers=headers,
        REMOTE_ADDR=ip,
        HTTP_ACCEPT_LANGUAGE="en",
    )


def stock_of(product) -> int:
    return int(stock_redis().get(stock_key(product.id)))


@pytest.mark.django_db(transaction=True)
def test_the_attack_variants_of_one_address_and_many_reservations_from_one_ip(client, crowd_settings):
    """The issue's run: 200 keys, 5 per order, one address trying 26
    reservations. It held 130 keys; now it holds 25."""
    product = product_with_keys(keys=200, per_buyer_limit=5, max_per_order=5, max_unpaid_per_buyer=1)

    # Variants of one mailbox are one buyer, whose 5 keys are then taken.
    variants = [buy(client, product, f"Hoarder+{i}@gmail.com") for i in range(1, 27)]
    variants.append(buy(client, product, "H.oarder@googlemail.com"))
    assert [a.status_code for a in variants] == [202] + [409] * 26
    assert {a.json()["error"] for a in variants[1:]} == {"limit_exceeded"}
    assert stock_of(product) == 195

    # 26 other mailboxes from the same address: up to the cap, whatever the emails.
    others = [buy(client, product, f"hoarder{i}@example.com") for i in range(26)]
    assert [a.status_code for a in others] == [202] * 4 + [409] * 22
    refused = others[-1].json()
    assert (refused["error"], refused["max_unpaid"]) == ("unpaid_limit", 5)
    assert refused["detail"] == (
        "Too many unpaid orders for this product come from your network. Pay one of them or let it expire first."
    )
    assert stock_of(product) == 200 - 5 * 5

    # Another client is not held back by the hoarder.
    assert buy(client, product, "someone@example.com", ip="198.51.100.20").status_code == 202

    # The order keeps the address as typed, for its mail.
    persistence.order_persist_queued()
    first = Order.objects.get(order_no=variants[0].json()["order_no"])
    assert first.buyer_email == "Hoarder+1@gmail.com"


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_crowd_from_one_address_gets_exactly_the_cap(crowd_settings):
    product = product_with_keys(keys=100, max_unpaid_per_buyer=1)
    barrier = threading.Barrier(20)

    def attempt(i):
        barrier.wait()
        try:
            order_checkout(
                sku=product.sku, email=f"crowd{i}@example.com", quantity=1, buyer=BuyerContext(ip=HOARDER_IP)
            )
            return "ok"
        except UnpaidLimit:
            return "unpaid_limit"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count("ok") == 5 and outcomes.count("unpaid_limit") == 15
    assert stock_of(product) == 95


@pytest.mark.django_db(transaction=True)
def test_paying_or_expiry_frees_the_address_slot(client, crowd_settings):
    crowd_settings.UNPAID_CAP_PER_IP = 2
    product = product_with_keys(keys=50, per_buyer_limit=5, max_unpaid_per_buyer=1)
    first, second = (buy(client, product, f"b{i}@example.com", quantity=1) for i in range(2))
    assert buy(client, product, "b2@example.com", quantity=1).json()["error"] == "unpaid_limit"

    persistence.order_persist_queued()
    pay(first.json()["order_no"], event_id="evt-first")
    assert buy(client, product, "b3@example.com", quantity=1).status_code == 202
    assert buy(client, product, "b4@example.com", quantity=1).json()["error"] == "unpaid_limit"

    persistence.order_persist_queued()
    assert expiry.order_expire_due(now=timezone.now() + timedelta(days=1)) == 2
    assert Order.objects.get(order_no=second.json()["order_no"]).status == Order.Status.EXPIRED
    assert buy(client, product, "b5@example.com", quantity=1).status_code == 202
    assert buy(client, product, "b6@example.com", quantity=1).status_code == 202
    assert buy(client, product, "b7@example.com", quantity=1).json()["error"] == "unpaid_limit"


@pytest.mark.django_db(transaction=True)
def test_the_cap_survives_a_gate_rebuild(client, crowd_settings):
    crowd_settings.UNPAID_CAP_PER_IP = 2
    product = product_with_keys(keys=20, max_unpaid_per_buyer=1)
    for i in range(2):
        assert buy(client, product, f"r{i}@example.com", quantity=1).status_code == 202
    persistence.order_persist_queued()
    redis_lose_product(product)
    stock_warm(product=product)
    assert buy(client, product, "r2@example.com", quantity=1).json()["error"] == "unpaid_limit"
    assert stock_of(product) == 18


@pytest.mark.django_db(transaction=True)
def test_addresses_in_the_exempt_networks_are_not_capped(client, crowd_settings):
    crowd_settings.UNPAID_CAP_PER_IP = 2
    crowd_settings.UNPAID_CAP_EXEMPT_NETWORKS = ["100.64.0.0/10", "2001:db8::/32"]
    product = product_with_keys(keys=50, max_unpaid_per_buyer=1)
    for ip in ("100.64.3.4", "2001:db8::1"):
        assert [
            buy(client, product, f"{i}-{ip}@example.com".replace(":", ""), ip=ip, quantity=1).status_code
            for i in range(4)
        ] == [202] * 4
    # Just outside the block: capped.
    outside = [buy(client, product, f"o{i}@example.com", ip="100.128.0.1", quantity=1).status_code for i in range(3)]
    assert outside == [202, 202, 409]


@pytest.mark.django_db(transaction=True)
def test_an_ipv6_client_is_capped_by_its_64(client, crowd_settings):
    crowd_settings.UNPAID_CAP_PER_IP = 2
    product = product_with_keys(keys=20, max_unpaid_per_buyer=1)
    ips = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"]
    assert [buy(client, product, f"v{i}@example.com", ip=ip, quantity=1).status_code for i, ip in enumerate(ips)] == [
        202,
        202,
        409,
    ]


@pytest.mark.django_db(transaction=True)
def test_the_cap_can_be_turned_off(client, crowd_settings):
    crowd_settings.UNPAID_CAP_PER_IP = 0
    product = product_with_keys(keys=50, max_unpaid_per_buyer=1)
    assert {buy(client, product, f"n{i}@example.com", quantity=1).status_code for i in range(8)} == {202}


@pytest.mark.django_db(transaction=True)
def test_the_idempotency_key_is_scoped_to_the_mailbox(client, crowd_settings):
    """A retry with the same key and body returns the first order; a variant
    of the same mailbox with the same key is that buyer's reused key."""
    product = product_with_keys(keys=20, max_unpaid_per_buyer=1)
    first = buy(client, product, "Hoarder+1@gmail.com", quantity=1, key="k")
    assert (
        buy(client, product, "Hoarder+1@gmail.com", quantity=1, key="k").json()["order_no"] == first.json()["order_no"]
    )
    reused = buy(client, product, "hoarder+2@gmail.com", quantity=1, key="k")
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")
    assert stock_of(product) == 19
