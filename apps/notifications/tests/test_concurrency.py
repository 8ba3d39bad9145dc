"""Once per channel, also when the same work runs at the same moment: real
threads, real MariaDB transactions."""

import threading

import pytest
from django.db import connection

from apps.notifications import services
from apps.notifications.models import Delivery, StockAlert
from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory
from apps.orders.tests.support import product_with_keys

from .support import notifications_configure

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8


def at_once(work) -> list:
    """Run `work()` in THREADS threads released together; their results."""
    barrier = threading.Barrier(THREADS)
    results, errors = [], []

    def run():
        barrier.wait()
        try:
            results.append(work())
        except Exception as exc:  # reported below, with the others
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_a_paid_order_fanned_out_by_many_tasks_at_once_gets_one_delivery_per_channel(monkeypatch):
    sends = []
    monkeypatch.setattr(
        "apps.notifications.tasks.notification_deliver_task.delay_on_commit",
        lambda delivery_id: sends.append(delivery_id),
    )
    notifications_configure(webhook_url="http://127.0.0.1:9/hook", email=True, notify_low_stock=False)
    order = OrderFactory(status=Order.Status.PAID)
    at_once(lambda: services.notifications_order_paid(order_id=order.id))
    assert sorted(Delivery.objects.values_list("channel", flat=True)) == ["email", "webhook"]
    # Published at least once each (a delivery nobody has tried may be published again; its send is locked).
    assert set(sends) == set(Delivery.objects.values_list("id", flat=True))


def test_many_stock_checks_at_once_announce_one_crossing_once(monkeypatch):
    monkeypatch.setattr("apps.notifications.tasks.notification_deliver_task.delay_on_commit", lambda delivery_id: None)
    notifications_configure(email=True, low_stock_threshold=5, notify_paid_orders=False)
    product = product_with_keys(keys=3, warm=False)
    announced = at_once(lambda: services.notifications_stock_check(product_ids=[product.id]))
    assert sorted(map(len, announced)) == [0] * (THREADS - 1) + [1]
    assert Delivery.objects.filter(event=Delivery.Event.STOCK_LOW).count() == 1
    assert StockAlert.objects.get(product=product).crossings == 1
