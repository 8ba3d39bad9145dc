"""Delivery mails: one message per fulfilment batch, each mail sent once, retries bounded."""

import threading
from datetime import timedelta
from unittest import mock

import pytest
import redis
from celery.exceptions import Retry
from django.core import mail
from django.db import OperationalError, connection
from django.utils import timezone, translation

from apps.cardkeys.tests.factories import CardKeyFactory
from apps.catalog.tests.factories import ProductFactory
from apps.core import metrics
from apps.orders import mail as order_mail
from apps.orders import tasks
from apps.orders.models import Order
from apps.orders.services import fulfilment
from apps.orders.services.reconcile import reconcile_run
from apps.orders.tasks import mail_retry_wait, send_order_keys_email_task
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import mail_claim_key, mail_queued_key
from testing.processes import free_port

from .support import paid_orders, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_batch_mails_in_one_message_and_a_failing_mail_goes_on_alone(published, monkeypatch):
    orders = paid_orders(product_with_keys(keys=4, per_buyer_limit=1), 4)
    batches = []
    monkeypatch.setattr(tasks.send_order_keys_emails_task, "delay", lambda order_ids: batches.append(order_ids))
    fulfilment.fulfilment_run(order_id=None)
    assert batches == [[o.id for o in orders]]  # one message for the whole batch

    real_send = order_mail._message_send
    bounced = orders[2]

    def send(connection, message, *, order_id):
        if message.to == [bounced.buyer_email]:
            raise OSError("mail server refused the recipient")
        return real_send(connection, message, order_id=order_id)

    alone = []
    monkeypatch.setattr(order_mail, "_message_send", send)
    monkeypatch.setattr(
        tasks.send_order_keys_email_task, "apply_async", lambda args, countdown: alone.append((args, countdown))
    )
    tasks.send_order_keys_emails_task.apply(args=[batches[0]], throw=True)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(o.buyer_email for o in orders if o.id != bounced.id)
    assert alone == [((bounced.id,), 5)]
    assert set(Order.objects.filter(keys_emailed_at__isnull=False).values_list("id", flat=True)) == {
        o.id for o in orders if o.id != bounced.id
    }
    # Its retry alone is in flight: reconciliation does not queue it again meanwhile.
    assert stock_redis().ttl(mail_queued_key(bounced.id)) > 5
    # Its lease was given back, so its retry alone can send it.
    monkeypatch.setattr(order_mail, "_message_send", real_send)
    tasks.send_order_keys_email_task.apply(args=[bounced.id], throw=True)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(o.buyer_email for o in orders)


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


def test_the_plain_text_mail_carries_keys_and_title_byte_for_byte():
    """A text/plain mail is not HTML: a key like K3&<i>"' must arrive as it
    was uploaded, not as K3&amp;&lt;i&gt;&quot;&#x27; (which a buyer would
    type in and be refused)."""
    secret, title = "K3&<i>\"'", 'Tom & Jerry <Gold> "edition"'
    key = CardKeyFactory(sold=True, secret=secret, product=ProductFactory(title=title))
    order_mail.order_keys_email_send(order_id=key.order_id)
    (message,) = mail.outbox
    assert f"  {secret}" in message.body.splitlines(), message.body
    assert title in message.body
    assert "&amp;" not in message.body and "&lt;" not in message.body
    # An HTML alternative, if one is ever added, must escape what this one must not.
    for content, mimetype in getattr(message, "alternatives", []):
        assert mimetype != "text/html" or ("K3&amp;&lt;i&gt;" in content and secret not in content)


def delivered(count: int) -> list[Order]:
    """`count` delivered orders of one product, each with its own buyer; their
    mail messages are not published (the `published` fixture)."""
    orders = paid_orders(product_with_keys(keys=count, per_buyer_limit=1), count)
    fulfilment.fulfilment_run(order_id=None)
    return orders


def mailed_to() -> list[str]:
    return sorted(m.to[0] for m in mail.outbox)


def test_two_workers_mailing_the_same_orders_send_each_mail_once(published, settings):
    """A redelivered message, or a re-drive, while the first worker still
    sends: both walk the same orders at the same time."""
    settings.EMAIL_BACKEND = "apps.orders.tests.mail_backends.SlowLocmemBackend"
    orders = delivered(6)
    ids = [o.id for o in orders]
    start = threading.Barrier(2)

    def worker():
        start.wait()
        try:
            order_mail.order_keys_emails_send(order_ids=ids)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert mailed_to() == sorted(o.buyer_email for o in orders)
    assert Order.objects.filter(id__in=ids, keys_emailed_at__isnull=False).count() == 6


def test_a_worker_killed_before_its_database_marks_sends_no_mail_again(published, monkeypatch):
    """Marks are written ten at a time: a worker killed after three mails
    left no database mark; the redelivered message must not send them again."""
    orders = delivered(3)
    ids = [o.id for o in orders]
    with monkeypatch.context() as killed:
        killed.setattr(order_mail, "_mark_emailed", lambda order_ids: None)  # died before marking
        tasks.send_order_keys_emails_task.apply(args=[ids], throw=True)
    assert Order.objects.filter(keys_emailed_at__isnull=False).count() == 0
    tasks.send_order_keys_emails_task.apply(args=[ids], throw=True)  # the message, redelivered
    assert mailed_to() == sorted(o.buyer_email for o in orders)
    assert Order.objects.filter(keys_emailed_at__isnull=False).count() == 3  # the record catches up


def test_a_mail_another_worker_holds_is_not_sent_but_retried_after_its_lease(published):
    """The worker sending it was killed mid-send: its lease holds the mail
    until it ends, then the retry sends it (not dropped, not doubled)."""
    first, second = delivered(2)
    stock_redis().set(mail_claim_key(first.id), "killed-worker", ex=60)
    with mock.patch.object(tasks.send_order_keys_emails_task, "retry", side_effect=Retry()) as retry:
        tasks.send_order_keys_emails_task.apply(args=[[first.id, second.id]])
    assert mailed_to() == [second.buyer_email]
    assert retry.call_args.kwargs["args"] == [[first.id]]
    stock_redis().delete(mail_claim_key(first.id))  # the lease ended
    tasks.send_order_keys_emails_task.apply(args=[[first.id]], throw=True)
    assert mailed_to() == sorted([first.buyer_email, second.buyer_email])


def test_without_the_gate_redis_no_mail_is_sent_unclaimed_and_the_message_retries(published, monkeypatch):
    orders = delivered(2)
    ids = [o.id for o in orders]
    unreachable = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    with monkeypatch.context() as outage:
        outage.setattr(order_mail, "stock_redis", lambda: unreachable)
        with mock.patch.object(tasks.send_order_keys_emails_task, "retry", side_effect=Retry()) as retry:
            tasks.send_order_keys_emails_task.apply(args=[ids])
    assert mail.outbox == []
    assert isinstance(retry.call_args.kwargs["exc"], order_mail.MailClaimUnavailable)
    tasks.send_order_keys_emails_task.apply(args=[ids], throw=True)  # Redis is back: the retry
    assert mailed_to() == sorted(o.buyer_email for o in orders)


def test_reconcile_redrives_old_unsent_mails_a_bounded_number_a_run_never_one_in_flight(
    published, settings, monkeypatch
):
    """Mail messages lost with the broker or a worker: reconcile queues the
    mails of orders delivered before the threshold again, a bounded number
    per run, stepping over a mail another worker is sending right now."""
    settings.MAIL_REDRIVE_AFTER_SECONDS = 60
    settings.MAIL_REDRIVE_BATCH = 2
    orders = delivered(5)
    old, recent = orders[:4], orders[4]
    Order.objects.filter(id__in=[o.id for o in old]).update(delivered_at=timezone.now() - timedelta(minutes=10))
    in_flight = old[0]
    stock_redis().set(mail_claim_key(in_flight.id), "a-worker-sending-it", ex=60)
    queued: list[list[int]] = []
    monkeypatch.setattr(tasks.send_order_keys_emails_task, "delay", lambda order_ids: queued.append(order_ids))

    def run_queued():
        while queued:
            tasks.send_order_keys_emails_task.apply(args=[queued.pop(0)], throw=True)

    assert reconcile_run(drift_settle_seconds=0).mails_redriven == [old[1].order_no, old[2].order_no]
    assert reconcile_run(drift_settle_seconds=0).mails_redriven == [old[3].order_no]  # 1 and 2 are queued
    run_queued()
    assert mailed_to() == sorted(o.buyer_email for o in old[1:])
    assert reconcile_run(drift_settle_seconds=0).mails_redriven == []  # in flight, or recent
    stock_redis().delete(mail_claim_key(in_flight.id))  # its worker died; the lease ended
    counted = metrics.RECONCILE_FIXES.labels("mails_redriven")._value.get()
    report = reconcile_run(drift_settle_seconds=0)
    assert report.mails_redriven == [in_flight.order_no]
    assert metrics.RECONCILE_FIXES.labels("mails_redriven")._value.get() - counted == 1
    with translation.override("en"):
        assert f"re-driven delivery mails: 1 {in_flight.order_no}" in report.lines()
    run_queued()
    assert mailed_to() == sorted(o.buyer_email for o in old)  # each once; the recent one waits for its own message
    assert Order.objects.get(id=recent.id).keys_emailed_at is None


def test_a_mail_sent_but_not_marked_in_redis_gets_its_database_mark_at_once(published, monkeypatch):
    """Redis refuses the "sent" mark after the server accepted the mail: the
    lease would expire and let the mail go again, so the database mark is
    written for that mail at once, not with its group."""
    orders = delivered(2)
    marks: list[list[int]] = []
    real_mark = order_mail._mark_emailed
    monkeypatch.setattr(
        order_mail, "_mark_emailed", lambda order_ids: (marks.append(list(order_ids)), real_mark(order_ids))
    )
    monkeypatch.setattr(order_mail, "SENT_MARK_SECONDS", 0)  # Redis answers "invalid expire time": a RedisError
    order_mail.order_keys_emails_send(order_ids=[o.id for o in orders])
    assert sorted(marks[:2]) == [[orders[0].id], [orders[1].id]]
    assert Order.objects.filter(keys_emailed_at__isnull=False).count() == 2
    assert mailed_to() == sorted(o.buyer_email for o in orders)
