"""Delivery mails: one message per fulfilment batch, each mail sent once, retries bounded."""

from unittest import mock

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.db import OperationalError

from apps.orders import mail as order_mail
from apps.orders import tasks
from apps.orders.models import Order
from apps.orders.services import fulfilment
from apps.orders.tasks import mail_retry_wait, send_order_keys_email_task

from .support import paid_orders, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_batch_mails_in_one_message_and_a_failing_mail_goes_on_alone(published, monkeypatch):
    orders = paid_orders(product_with_keys(keys=4, per_buyer_limit=1), 4)
    batches = []
    monkeypatch.setattr(tasks.send_order_keys_emails_task, "delay", lambda order_ids: batches.append(order_ids))
    fulfilment.fulfilment_run(order_id=None)
    assert batches == [[o.id for o in orders]]  # one message for the whole batch

    real_send = order_mail._keys_email_send
    bounced = orders[2]

    def send(order):
        if order.id == bounced.id:
            raise OSError("mail server refused the recipient")
        real_send(order)

    alone = []
    monkeypatch.setattr(order_mail, "_keys_email_send", send)
    monkeypatch.setattr(
        tasks.send_order_keys_email_task, "apply_async", lambda args, countdown: alone.append((args, countdown))
    )
    tasks.send_order_keys_emails_task.apply(args=[batches[0]], throw=True)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(o.buyer_email for o in orders if o.id != bounced.id)
    assert alone == [((bounced.id,), 5)]
    assert set(Order.objects.filter(keys_emailed_at__isnull=False).values_list("id", flat=True)) == {
        o.id for o in orders if o.id != bounced.id
    }


def test_a_mail_message_delivered_again_sends_no_mail_twice(published, monkeypatch):
    """A batch's mail message comes back when its worker died mid-batch (or a
    retry outlived the broker's visibility timeout): mails already sent are
    not sent again."""

    orders = paid_orders(product_with_keys(keys=3, per_buyer_limit=1), 3)
    fulfilment.fulfilment_run(order_id=None)
    ids = [o.id for o in orders]
    tasks.send_order_keys_emails_task.apply(args=[ids[:2]], throw=True)  # the worker died after two
    tasks.send_order_keys_emails_task.apply(args=[ids], throw=True)  # the whole message again
    assert sorted(m.to[0] for m in mail.outbox) == sorted(o.buyer_email for o in orders)
    assert Order.objects.filter(keys_emailed_at__isnull=False).count() == 3


def test_mail_retries_back_off_but_never_past_half_the_visibility_timeout(settings):
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 300}
    waits = [mail_retry_wait(retries=n) for n in range(send_order_keys_email_task.max_retries + 1)]
    assert waits[:5] == [5, 10, 20, 40, 80]
    assert max(waits) == 150  # a longer countdown would be handed out twice
    assert mail_retry_wait(retries=0, retry_after=60) == 60  # an open breaker's wait
    assert 3600 < sum(waits) < 3 * 3600  # a mail outage of an hour or two is ridden out


def test_a_mail_message_that_meets_a_database_error_is_retried(published, monkeypatch):
    def database_gone(*, order_ids):
        raise OperationalError(2006, "MySQL server has gone away")

    monkeypatch.setattr(tasks, "order_keys_emails_send", database_gone)
    with mock.patch.object(tasks.send_order_keys_emails_task, "retry", side_effect=Retry()) as retry:
        tasks.send_order_keys_emails_task.apply(args=[[1, 2]])
    assert isinstance(retry.call_args.kwargs["exc"], OperationalError)
