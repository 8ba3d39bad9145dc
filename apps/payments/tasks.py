from celery import shared_task

from .exceptions import NotificationDeliveryFailed
from .providers.sandbox import notification_deliver


# Like a real provider, the sandbox keeps trying for a while (about a quarter
# of an hour): an order still queued for persistence is answered 404 at first.
@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(NotificationDeliveryFailed,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=8,
)
def sandbox_notification_deliver_task(*, fields: dict) -> None:
    notification_deliver(fields=fields)
