"""Cancel: the buyer gives up an unpaid order; its stock returns at once, an
open provider payment is closed, and a payment that still arrives is taken
as one after expiry."""

import threading

import pytest
from django.db import connection

from apps.cardkeys.models import CardKey
from apps.orders.exceptions import OrderNotCancellable
from apps.orders.models import Order
from apps.orders.services import fulfilment, persistence
from apps.orders.services.cancel import order_cancel
from apps.stock.selectors import stock_remaining

from .support import checkout, pay, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def closed(monkeypatch):
    """Orders whose provider payments were asked to close (the task, not run)."""
    asked = []
    monkeypatch.setattr("apps.payments.tasks.payment_close_task.delay", asked.append)
    return asked


def cancel(client, order_no, token):
    return client.post(f"/api/v1/orders/{order_no}/cancel", headers={"X-Order-Token": token})


def test_cancel_returns_the_stock_at_once_and_closes_the_provider_payment(client, closed):
    product = product_with_keys(keys=2)
    result = checkout(product)
    persistence.order_persist_queued()
    assert stock_remaining(product_id=product.id) == 1

    response = cancel(client, result.order_no, result.access_token)

    assert response.status_code == 200
    assert response.json() == {"order_no": result.order_no, "status": "cancelled"}
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.CANCELLED
    assert stock_remaining(product_id=product.id) == 2
    assert closed == [result.order_no]
    assert cancel(client, result.order_no, result.access_token).status_code == 200  # twice: the same answer
    assert stock_remaining(product_id=product.id) == 2
    snapshot = client.get(f"/api/v1/orders/{result.order_no}", headers={"X-Order-Token": result.access_token}).json()
    assert snapshot["payment_methods"] == [] and snapshot["pay_deadline"] is None


def test_a_queued_order_is_written_then_cancelled(client, closed):
    product = product_with_keys(keys=1)
    result = checkout(product)  # not persisted yet

    assert cancel(client, result.order_no, result.access_token).status_code == 200
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.CANCELLED
    assert stock_remaining(product_id=product.id) == 1


def test_only_the_token_holder_cancels_and_only_an_unpaid_order(client, closed, celery_eager):
    product = product_with_keys(keys=2)
    result = checkout(product)
    persistence.order_persist_queued()
    assert cancel(client, result.order_no, "wrong").status_code == 404
    assert cancel(client, "261129-999-NOSUCHORDER", result.access_token).status_code == 404

    pay(result.order_no)  # delivered (tasks run eagerly)
    response = cancel(client, result.order_no, result.access_token)
    assert response.status_code == 409 and response.json()["error"] == "not_cancellable"
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.DELIVERED
    assert closed == []


def test_a_payment_after_cancel_is_delivered_while_keys_remain(closed, celery_eager):
    product = product_with_keys(keys=1)
    result = checkout(product)
    persistence.order_persist_queued()
    order_cancel(order_no=result.order_no)

    pay(result.order_no, event_id="late")

    order = Order.objects.get(order_no=result.order_no)
    assert order.status == Order.Status.DELIVERED
    assert stock_remaining(product_id=product.id) == 0


def test_a_payment_after_cancel_is_refunded_when_the_keys_went_to_another(closed, monkeypatch):
    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: None)
    monkeypatch.setattr("apps.orders.tasks.fulfil_order_task.delay", lambda order_id=None: None)
    monkeypatch.setattr("apps.orders.tasks.send_order_keys_emails_task.delay", lambda order_ids: None)
    product = product_with_keys(keys=1)
    first = checkout(product, email="first@x.com")
    persistence.order_persist_queued()
    order_cancel(order_no=first.order_no)
    second = checkout(product, email="second@x.com")  # the returned key is sold again
    persistence.order_persist_queued()
    pay(second.order_no, event_id="second")

    pay(first.order_no, event_id="first-late")

    assert Order.objects.get(order_no=first.order_no).status == Order.Status.REFUND_PENDING
    fulfilment.fulfilment_run(order_id=None)
    assert Order.objects.get(order_no=second.order_no).status == Order.Status.DELIVERED
    assert stock_remaining(product_id=product.id) == 0


def test_cancel_racing_a_payment_ends_in_one_consistent_state(closed, monkeypatch):
    """A buyer cancels while the provider's notification arrives: either the
    cancel wins (and the payment is a late one, taking the stock back) or the
    payment wins (and the cancel is refused). Never both, never stock lost."""
    monkeypatch.setattr("apps.orders.tasks.fulfil_order_task.delay", lambda order_id=None: None)
    monkeypatch.setattr("apps.orders.tasks.send_order_keys_emails_task.delay", lambda order_ids: None)
    product = product_with_keys(keys=6, per_buyer_limit=1)
    results = [checkout(product, email=f"race{n}@x.com") for n in range(6)]
    persistence.order_persist_queued()

    def cancel_one(order_no):
        try:
            order_cancel(order_no=order_no)
        except OrderNotCancellable:
            pass  # the payment won
        finally:
            connection.close()

    def pay_one(order_no):
        try:
            pay(order_no, event_id=f"race-{order_no}")
        finally:
            connection.close()

    threads = [threading.Thread(target=f, args=(r.order_no,)) for r in results for f in (cancel_one, pay_one)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    fulfilment.fulfilment_run(order_id=None)

    for result in results:
        order = Order.objects.get(order_no=result.order_no)
        # Paid first: the cancel was refused. Cancelled first: the late payment took its key back.
        assert order.status == Order.Status.DELIVERED
    assert stock_remaining(product_id=product.id) == 0
    sold = CardKey.objects.filter(product=product, status=CardKey.Status.SOLD)
    assert sold.count() == 6 and sold.values("order_id").distinct().count() == 6
