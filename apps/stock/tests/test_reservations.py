"""The Reservation record reads what checkout.lua writes, writes what the
other scripts read, and stands for a database order the same way."""

import json

import pytest

from apps.orders.models import Order
from apps.orders.services.checkout import order_checkout
from apps.orders.services.persistence import order_persist_queued
from apps.orders.tests.support import product_with_keys
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import persist_queue_key, reservations_key
from apps.stock.reservations import Reservation

pytestmark = pytest.mark.django_db(transaction=True)


def test_what_checkout_writes_reads_back_typed_and_round_trips():
    product = product_with_keys(keys=5)
    result = order_checkout(sku=product.sku, email="Buyer@Example.com", quantity=2)
    raw = stock_redis().hget(reservations_key(product.id), result.order_no)

    reservation = Reservation.from_json(raw)
    assert reservation.order_no == result.order_no
    assert reservation.quantity == 2 and reservation.unit_price == "9.90" and reservation.currency == "CNY"
    # As typed: the order mails that address; the limits count its normalised form.
    assert reservation.email == "Buyer@Example.com" and reservation.paid is False
    assert reservation.buyers and all(b.startswith("e:") for b in reservation.buyers)
    assert reservation.reserved_until > reservation.created_at
    assert Reservation.from_json(reservation.to_json()) == reservation
    assert json.loads(reservation.to_json()).keys() >= json.loads(raw).keys()
    assert stock_redis().lindex(persist_queue_key(product.id), 0) == raw


def test_the_order_a_reservation_became_stands_for_the_same_reservation():
    product = product_with_keys(keys=5)
    result = order_checkout(sku=product.sku, email="a@x.com", quantity=1)
    reservation = Reservation.from_json(stock_redis().hget(reservations_key(product.id), result.order_no))
    order_persist_queued()

    from_order = Reservation.from_order(Order.objects.get(order_no=result.order_no), paid=False)
    assert from_order.buyers == reservation.buyers
    assert from_order.reserved_until == reservation.reserved_until
    assert from_order.token_hash == reservation.token_hash and from_order.price == reservation.price


@pytest.mark.parametrize("raw", [b"{}", b"[]", b"not json", b'{"order_no": "x"}'])
def test_a_record_that_is_not_a_reservation_is_refused(raw):
    with pytest.raises((KeyError, TypeError, ValueError)):
        Reservation.from_json(raw)
