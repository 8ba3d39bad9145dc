"""Thin Celery tasks: load ids, call a service, own the retries. Every service
called here is a no-op when run twice, so acks_late redelivery is safe."""

import logging

from celery import shared_task
from django.conf import settings

from apps.orders.services import expiry, fulfilment, persistence, reconcile

# A module, not its names: it applies payments through the order services.
from apps.payments import services as payment_services

from .mail import order_keys_email_retry_queued, order_keys_email_send, order_keys_emails_send

logger = logging.getLogger(__name__)

TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "max_retries": 5}


@shared_task(bind=True, **TASK_OPTIONS)
def fulfil_order_task(self, order_id: int | None = None):
    # An order that cannot be fulfilled fails alone inside the run (it goes to
    # needs_attention); what reaches here is the database itself.
    try:
        report = fulfilment.fulfilment_run(order_id=order_id)
    except Exception as exc:  # a database hiccup: retry with backoff, bounded
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
    return {"delivered": len(report.delivered), "short": len(report.short)}


# The longest wait between two tries of a mail on RabbitMQ, which holds a
# delayed message at the broker for as long as asked.
MAIL_RETRY_MAX_SECONDS = 600


def mail_retry_wait(*, retries: int, retry_after: float = 0) -> int:
    """Seconds before a mail's next try: doubling from 5, never sooner than an
    open breaker lets a call through, and never longer than
    MAIL_RETRY_MAX_SECONDS; on the Redis broker never longer than half its
    visibility timeout. A countdown past that timeout makes the Redis
    transport hand the waiting message to a second worker, and each copy's
    retry doubles the messages again for as long as the outage lasts."""
    visibility_timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    ceiling = max(5, visibility_timeout // 2) if visibility_timeout else MAIL_RETRY_MAX_SECONDS
    return int(min(max(5 * 2 ** min(retries, 20), retry_after or 0), ceiling))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=40)
def send_order_keys_email_task(self, order_id: int):
    # Keys are decrypted here, in the worker, and never travel through the broker.
    # A mail outage can last: the retries settle at 10 minutes apart on
    # RabbitMQ, about 6 hours in all (on the Redis broker, with its default
    # visibility timeout of 300 s, 150 s apart, about 1.5 hours). The keys are
    # on the buyer's order page meanwhile.
    try:
        order_keys_email_send(order_id=order_id)
    except Exception as exc:
        wait = mail_retry_wait(retries=self.request.retries, retry_after=getattr(exc, "retry_after", 0))
        order_keys_email_retry_queued(order_id=order_id, countdown=wait)
        raise self.retry(exc=exc, countdown=wait) from exc


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def send_order_keys_emails_task(self, order_ids: list[int]):
    """The mails of one fulfilment batch, in one message (publishing one per
    order cost more than the fulfilment itself). A mail that fails goes on
    alone, with send_order_keys_email_task's retries, so one bad address or a
    mail outage never resends the others. Mails another worker holds (its
    lease: sending now, or killed while sending) come back in this message's
    retry once the lease may have ended: a message redelivered after a kill
    must not drop the mail its worker was sending."""
    try:
        report = order_keys_emails_send(order_ids=order_ids)
    except Exception as exc:  # the database or the gate Redis: what was sent is marked and skipped on the retry
        wait = mail_retry_wait(retries=self.request.retries, retry_after=getattr(exc, "retry_after", 0))
        raise self.retry(exc=exc, countdown=wait) from exc
    for order_id, exc in report.failed.items():
        countdown = mail_retry_wait(retries=0, retry_after=getattr(exc, "retry_after", 0))
        try:
            send_order_keys_email_task.apply_async((order_id,), countdown=countdown)
        except Exception:  # the broker too: reconcile re-drives it
            logger.exception("order id %s: its mail failed and could not be queued again", order_id)
        else:
            order_keys_email_retry_queued(order_id=order_id, countdown=countdown)
    if report.busy:
        wait = mail_retry_wait(retries=0, retry_after=settings.MAIL_LEASE_SECONDS)
        raise self.retry(args=[report.busy], countdown=wait)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def persist_reservations_task(product_id: int | None = None):
    # With a product: published by the first checkout of a burst. Without:
    # beat's once-a-second drain of every product, the safety net.
    if product_id is None:
        return persistence.order_persist_queued()
    return persistence.order_persist_requested(product_id=product_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def expire_reservations_task():
    return expiry.order_expire_due()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def reconcile_task():
    return reconcile.reconcile_run().lines()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def payments_query_expiring_task():
    """Before an unpaid order with a started payment expires, ask its provider
    (a lost notification must not cost the buyer the keys)."""
    return payment_services.payments_query_expiring()
