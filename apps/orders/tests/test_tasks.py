"""The Celery tasks of orders and where they are routed."""

import pytest

from apps.orders import tasks
from apps.payments import sandbox_server
from apps.payments import tasks as payment_tasks
from cardshop.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_kind_of_work_has_its_own_queue():
    """Persistence must never wait behind a fulfilment or mail backlog."""

    def queue_of(task):
        return app.amqp.router.route({}, task.name)["queue"].name

    assert queue_of(tasks.persist_reservations_task) == "gate"
    assert queue_of(tasks.fulfil_order_task) == "fulfil"
    assert queue_of(tasks.send_order_keys_email_task) == "mail"
    assert queue_of(tasks.send_order_keys_emails_task) == "mail"
    assert queue_of(tasks.reconcile_task) == "gate"
    assert queue_of(payment_tasks.refund_order_task) == "payments"
    assert queue_of(sandbox_server.sandbox_notification_deliver_task) == "payments"
    consumed = {q.name for q in app.conf.task_queues}
    assert {"gate", "fulfil", "mail", "payments", "celery"} <= consumed
