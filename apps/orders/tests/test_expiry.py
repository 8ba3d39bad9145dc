"""Expiry: unpaid orders past their reservation expire and their stock returns."""

import pytest
from django.utils import timezone

from apps.orders.models import Order
from apps.orders.services import expiry, persistence
from apps.stock.selectors import stock_remaining

from .support import checkout, pay, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def test_expiry_returns_stock_and_late_payment(celery_eager):
    product = product_with_keys(keys=1, per_buyer_limit=1)
    result = checkout(product)
    persistence.order_persist_queued()
    assert stock_remaining(product_id=product.id) == 0
    later = timezone.now() + timezone.timedelta(hours=1)
    assert expiry.order_expire_due(now=later) == 1
    assert expiry.order_expire_due(now=later) == 0
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.EXPIRED
    assert stock_remaining(product_id=product.id) == 1
    # The buyer's slot is free again too.
    # A late payment with stock left: delivered.
    pay(result.order_no, event_id="late")
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.DELIVERED
    assert stock_remaining(product_id=product.id) == 0


def test_payment_between_expiry_commit_and_its_release_keeps_its_stock(celery_eager, monkeypatch):
    """Expiry commits, then a payment takes the order's row lock before the
    expiry's after-commit release has run: the late payment keeps the
    reservation, and the release that runs afterwards must not return it."""

    product = product_with_keys(keys=2)
    result = checkout(product)
    persistence.order_persist_queued()
    held_back = []
    monkeypatch.setattr(expiry, "_release_unpaid_rollback_unsafe", held_back.append)
    expiry.order_expire_due(now=timezone.now() + timezone.timedelta(hours=1))
    pay(result.order_no, event_id="late-race")
    monkeypatch.undo()
    expiry._release_unpaid_rollback_unsafe(held_back[0])
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.DELIVERED
    assert stock_remaining(product_id=product.id) == 1  # one key sold, one left: no phantom stock
