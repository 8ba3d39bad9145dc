"""Checkout remembers, in this process and for SOLD_OUT_MEMO_SECONDS, the
stock the gate last reported for a product, so the crowd that arrives after
the last key is answered sold_out without a Redis round trip (3 of 4 buyers
in the benchmark's flash sale). A refusal never comes from a memory older
than that, never for a quantity the stock it remembers would cover, and a
checkout with an idempotency key always asks the gate (a retry gets its
first order)."""

import time

import pytest
from django.test import override_settings

from apps.orders.exceptions import SoldOut
from apps.orders.services.cancel import order_cancel
from apps.stock import services as stock
from apps.stock import sold_out_memo
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key
from apps.stock.selectors import stock_remaining

from .support import checkout, product_with_keys

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("memo_on")]

MEMO_SECONDS = 0.5


@pytest.fixture
def memo_on(monkeypatch):
    # The suite runs with the memo off (cardshop/settings/test.py says why),
    # and each test starts with an empty one (product ids repeat across tests).
    monkeypatch.setattr(sold_out_memo, "_stock_seen", {})
    with override_settings(SOLD_OUT_MEMO_SECONDS=MEMO_SECONDS):
        yield


@pytest.fixture
def gate_calls(monkeypatch):
    """How many times checkout asked the gate (the checkout script's round trip)."""
    calls = []
    reserve = stock.stock_reserve

    def counted(**call):
        calls.append(call["product_id"])
        return reserve(**call)

    monkeypatch.setattr(stock, "stock_reserve", counted)
    return calls


def test_after_the_last_key_the_crowd_is_refused_without_asking_the_gate(gate_calls):
    product = product_with_keys(keys=2)
    checkout(product, email="a@x.com")
    checkout(product, email="b@x.com")  # the gate reports 0 left
    for n in range(5):
        with pytest.raises(SoldOut):
            checkout(product, email=f"late-{n}@x.com")
    assert len(gate_calls) == 2


def test_a_gate_answer_of_sold_out_is_remembered_too(gate_calls):
    product = product_with_keys(keys=1)
    stock_redis().set(stock_key(product.id), 0)  # sold by another process
    with pytest.raises(SoldOut):
        checkout(product, email="a@x.com")
    with pytest.raises(SoldOut):
        checkout(product, email="b@x.com")
    assert len(gate_calls) == 1


def test_stock_returned_elsewhere_is_sold_again_once_the_memory_is_older_than_its_limit(gate_calls):
    product = product_with_keys(keys=1)
    checkout(product, email="a@x.com")
    # Another process returns a unit (a cancel on another web node, an expiry in a worker).
    stock_redis().incr(stock_key(product.id))
    with pytest.raises(SoldOut):
        checkout(product, email="b@x.com")  # within the memory's limit: the documented staleness
    time.sleep(MEMO_SECONDS + 0.05)
    assert checkout(product, email="b@x.com").status == "queued"
    assert stock_remaining(product_id=product.id) == 0


def test_a_release_in_this_process_is_sold_again_at_once():
    product = product_with_keys(keys=1)
    first = checkout(product, email="a@x.com")
    order_cancel(order_no=first.order_no)
    assert checkout(product, email="b@x.com").status == "queued"


def test_a_quantity_the_remembered_stock_covers_still_asks_the_gate(gate_calls):
    product = product_with_keys(keys=3)
    checkout(product, email="a@x.com", quantity=2)  # the gate reports 1 left
    with pytest.raises(SoldOut):
        checkout(product, email="b@x.com", quantity=2)  # refused here
    assert checkout(product, email="c@x.com", quantity=1).status == "queued"
    assert len(gate_calls) == 2


def test_a_retry_with_its_idempotency_key_gets_its_order_after_the_sale_sold_out():
    product = product_with_keys(keys=1)
    first = checkout(product, email="a@x.com", key="k-1")
    with pytest.raises(SoldOut):
        checkout(product, email="b@x.com")
    again = checkout(product, email="a@x.com", key="k-1")
    assert (again.order_no, again.access_token) == (first.order_no, first.access_token)


def test_with_the_memory_off_every_checkout_asks_the_gate(gate_calls):
    product = product_with_keys(keys=1)
    checkout(product, email="a@x.com")
    with override_settings(SOLD_OUT_MEMO_SECONDS=0):
        for n in range(3):
            with pytest.raises(SoldOut):
                checkout(product, email=f"late-{n}@x.com")
    assert len(gate_calls) == 4
