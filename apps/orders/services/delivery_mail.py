"""Delivery mails that never went out: reconciliation queues them again.

A mail message can be lost with the broker (Redis as broker, killed without
persistence) or with its worker, or run out of retries; the order is
delivered and its keys are on its page, but the buyer was promised a mail.
Sending itself, and its at-most-once claim, live in apps/orders/mail.py."""

from django.conf import settings
from django.utils import timezone

# The module, not its names: the tasks import the mail module this calls.
from apps.orders import tasks

from ..mail import order_keys_emails_take_for_redrive
from ..models import Order

# A run reads at most this many batches of unsent orders (MAIL_REDRIVE_BATCH
# each) looking for ones not in flight.
SCAN_BATCHES = 10


def order_mails_redrive_stuck() -> list[str]:
    """Queue again the mails of orders delivered over MAIL_REDRIVE_AFTER_SECONDS
    ago and still without a database mail mark, at most MAIL_REDRIVE_BATCH a
    run, oldest first, in messages of FULFIL_BATCH_SIZE like fulfilment's.
    Mails in flight (leased, or queued by an earlier re-drive or a retry) are
    left alone, so a re-drive never doubles a mail that is merely slow (and
    the claim at sending time would refuse a second send anyway); they are
    stepped over, not counted, so the oldest ones in flight never hold back
    newer ones, and a run reads at most SCAN_BATCHES batches. Raises
    RedisError or the broker's error. Returns the numbers re-driven."""
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.MAIL_REDRIVE_AFTER_SECONDS)
    unsent = Order.objects.filter(
        status=Order.Status.DELIVERED, keys_emailed_at__isnull=True, delivered_at__lt=cutoff
    ).order_by("id")
    redriven: list[tuple[int, str]] = []
    after = 0
    for _scan in range(SCAN_BATCHES):
        rows = dict(unsent.filter(id__gt=after).values_list("id", "order_no")[: settings.MAIL_REDRIVE_BATCH])
        if not rows:
            break
        considered = list(rows)[: settings.MAIL_REDRIVE_BATCH - len(redriven)]
        after = considered[-1]
        taken = order_keys_emails_take_for_redrive(order_ids=considered)
        redriven += [(order_id, rows[order_id]) for order_id in taken]
        if len(redriven) >= settings.MAIL_REDRIVE_BATCH:
            break
    ids = [order_id for order_id, _order_no in redriven]
    for start in range(0, len(ids), settings.FULFIL_BATCH_SIZE):
        tasks.send_order_keys_emails_task.delay(ids[start : start + settings.FULFIL_BATCH_SIZE])
    return [order_no for _order_id, order_no in redriven]
