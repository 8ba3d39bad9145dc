"""Payment: a verified notification marks an order paid once; late payments, refunds."""

from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from apps.cardkeys.models import CardKey
from apps.orders.exceptions import (
    OrderNotFound,
    OrderPending,
    PaymentMismatch,
)
from apps.orders.models import Order
from apps.orders.selectors import order_snapshot_get
from apps.orders.services import expiry, fulfilment, payment, persistence
from apps.payments.models import PaymentEvent

from .support import checkout, checkout_queued, pay, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def test_full_path_delivers_distinct_keys_and_mails_them(celery_eager):
    product = product_with_keys(keys=4)
    result = checkout(product, quantity=2)
    persistence.order_persist_queued()
    pay(result.order_no)
    order = Order.objects.get(order_no=result.order_no)
    assert order.status == Order.Status.DELIVERED
    keys = CardKey.objects.filter(order=order)
    assert keys.count() == 2 and {k.status for k in keys} == {"sold"}
    snapshot = order_snapshot_get(order_no=result.order_no, token=result.access_token)
    assert snapshot["status"] == "delivered" and len(set(snapshot["keys"])) == 2
    assert len(mail.outbox) == 1 and all(k in mail.outbox[0].body for k in snapshot["keys"])
    # Fulfilment again: nothing changes.
    assert fulfilment.order_fulfil(order_id=order.id).delivered == []
    assert CardKey.objects.filter(status="sold").count() == 2


def test_payment_checks_amount_and_dedupes(celery_eager):
    product = product_with_keys(keys=2)
    result = checkout_queued(product)
    with pytest.raises(OrderPending):  # not persisted yet: the provider is asked to retry
        payment.order_mark_paid(
            order_no=result.order_no, provider="sandbox", event_id="e", amount=Decimal("9.90"), currency="CNY"
        )
    with pytest.raises(OrderNotFound):  # no such order, nor a reservation: never payable
        payment.order_mark_paid(
            order_no=f"261122-{product.id}-NOSUCHORDER0",
            provider="sandbox",
            event_id="e",
            amount=Decimal("9.90"),
            currency="CNY",
        )
    persistence.order_persist_queued()
    with pytest.raises(PaymentMismatch):
        pay(result.order_no, amount=Decimal("1.00"))
    assert not PaymentEvent.objects.exists()
    for _ in range(3):
        pay(result.order_no, event_id="evt-same")
    assert PaymentEvent.objects.count() == 1
    assert CardKey.objects.filter(status="sold").count() == 1


def test_late_payment_without_stock_goes_to_refund_pending(celery_eager, monkeypatch):
    refunds = []
    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: refunds.append(order_id))
    product = product_with_keys(keys=1)
    first = checkout(product, email="a@x.com")
    persistence.order_persist_queued()
    expiry.order_expire_due(now=timezone.now() + timezone.timedelta(hours=1))
    checkout(product, email="b@x.com")  # takes the returned key
    pay(first.order_no, event_id="late")
    order = Order.objects.get(order_no=first.order_no)
    assert order.status == Order.Status.REFUND_PENDING
    assert refunds == [order.id]
