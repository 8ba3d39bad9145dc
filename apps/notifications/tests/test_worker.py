"""With a real Celery worker on the real broker: a webhook that fails twice
is tried three times with growing countdowns, while the buyer's keys are
delivered and mailed without waiting for it."""

import time

import pytest
from django.db import connection
from django.utils import timezone

from apps.notifications.models import Delivery
from apps.orders.models import Order
from apps.orders.services import persistence
from apps.orders.tests.processes import CeleryWorker
from apps.orders.tests.support import checkout, pay, product_with_keys

from .fakes import FakeWebhookReceiver
from .support import WEBHOOK_SECRET, notifications_configure, signature_valid

pytestmark = pytest.mark.django_db(transaction=True)


class TimedReceiver(FakeWebhookReceiver):
    """Notes when each request arrived, and the order's state at that moment."""

    def __init__(self, statuses, order_state):
        super().__init__(statuses)
        self.seen: list[tuple[float, str]] = []
        self._order_state = order_state

    def handle(self, handler):
        try:
            self.seen.append((time.monotonic(), self._order_state()))
        finally:
            connection.close()  # this request's thread's own connection
        super().handle(handler)


def test_a_webhook_failing_twice_is_retried_apart_while_the_keys_go_out(tmp_path):
    product = product_with_keys(keys=3)
    result = checkout(product, email="erin@buyer.example")
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=result.order_no)

    def order_state():
        state = Order.objects.filter(id=order.id).values_list("status", "keys_emailed_at").get()
        return f"{state[0]}{'+mailed' if state[1] else ''}"

    receiver = TimedReceiver([500, 502], order_state).start()
    worker = CeleryWorker(concurrency=2).start()
    try:
        notifications_configure(webhook_url=receiver.url, notify_low_stock=False)
        pay(result.order_no)
        worker.wait_until(
            lambda: Delivery.objects.filter(status=Delivery.Status.SENT).exists(),
            timeout=60,
            what="the webhook delivered on its third try",
        )
    finally:
        worker.stop()
        receiver.stop()

    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED and order.keys_emailed_at is not None
    delivery = Delivery.objects.get()
    assert delivery.attempts == 3
    attempts = list(delivery.attempt_records.values_list("succeeded", "http_status", "retry_in_seconds"))
    assert attempts == [(False, 500, 5), (False, 502, 10), (True, 200, None)]
    # The retries waited their countdowns (a lower bound, not a speed claim).
    times = [at for at, _state in receiver.seen]
    assert times[1] - times[0] >= 4.5 and times[2] - times[1] >= 9.5
    # Delivery and its mail did not wait for the merchant's webhook: done
    # before its first retry, and long before it succeeded.
    assert receiver.seen[1][1] == "delivered+mailed"
    assert order.delivered_at < delivery.sent_at - timezone.timedelta(seconds=10)
    for request in receiver.requests:
        assert signature_valid(
            header=request["headers"]["X-Cardshop-Signature"], body=request["body"], secret=WEBHOOK_SECRET
        )
