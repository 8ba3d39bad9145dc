"""Thin tasks of the merchant notifications, on the notify queue: the fan-out
of an event, each channel's send with its own retries, the low-stock check.
Every service here is a no-op when run twice."""

from celery import shared_task
from django.conf import settings

# Modules, not their names: the notification services publish these tasks,
# and apps.orders.tasks reaches the payment services that publish them too.
from apps.notifications import services
from apps.orders import tasks as order_tasks

TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True}


@shared_task(bind=True, max_retries=5, **TASK_OPTIONS)
def notify_order_paid_task(self, order_id: int):
    try:
        return services.notifications_order_paid(order_id=order_id)
    except Exception as exc:  # the database: retry with backoff, bounded
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc


def notify_retry_wait(number: int, retry_after: int) -> int:
    """The countdown before the try after try `number`: the mail's backoff
    (doubling from 5 s, capped below the broker's redelivery), never sooner
    than the receiver asked (Telegram's retry_after)."""
    return order_tasks.mail_retry_wait(retries=number - 1, retry_after=retry_after)


@shared_task(bind=True, max_retries=settings.NOTIFY_MAX_ATTEMPTS, **TASK_OPTIONS)
def notification_deliver_task(self, delivery_id: int):
    # The attempts are counted on the delivery row, not by Celery: a message
    # redelivered after a lost worker does not reset them.
    outcome = services.notification_deliver(delivery_id=delivery_id, wait_for_attempt=notify_retry_wait)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.sent


@shared_task(**TASK_OPTIONS)
def stock_low_check_task(product_ids: list[int] | None = None):
    # With products: after their orders were fulfilled. Without: beat's periodic check of every product.
    return services.notifications_stock_check(product_ids=product_ids)
