"""The sandbox provider's own side, as a real provider's servers would be:
it signs notifications and POSTs them to the shop's webhook, retried by a
Celery task. The provider class the shop talks to is providers/sandbox.py;
it publishes the task and verifies what arrives with the same signature."""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping

from celery import shared_task
from django.conf import settings
from django.urls import reverse

from .breaker import provider_post_guarded
from .delivery import http_post, webhook_deliver
from .exceptions import NotificationDeliveryFailed

SANDBOX = "sandbox"
SIGNATURE_HEADER = "X-Sandbox-Signature"
FIELDS = ("event_id", "order_no", "amount", "currency", "kind", "timestamp")
# A refund names the payment it returns.
OPTIONAL_FIELDS = ("payment_event_id",)


def notification_signature(body: bytes) -> str:
    return hmac.new(settings.SANDBOX_PAYMENT_SECRET.encode("utf-8"), body, hashlib.sha256).hexdigest()


def notification_sign(fields: Mapping[str, object]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a notification, as the sandbox sends it."""
    body = json.dumps(dict(fields), sort_keys=True, separators=(",", ":")).encode("utf-8")
    return body, {SIGNATURE_HEADER: notification_signature(body)}


def notification_deliver(*, fields: Mapping[str, str], post=http_post, sleep=time.sleep) -> int:
    """POST the notification to this site's sandbox webhook, signed afresh for
    each attempt, through the sandbox's circuit breaker: while it is open
    nothing is sent. Raises NotificationDeliveryFailed."""
    url = settings.SITE_URL.rstrip("/") + reverse("payments:webhook", kwargs={"provider": SANDBOX})
    return webhook_deliver(
        url=url,
        message=lambda: notification_sign({**fields, "timestamp": int(time.time())}),
        attempts=settings.SANDBOX_WEBHOOK_ATTEMPTS,
        timeout=settings.SANDBOX_WEBHOOK_TIMEOUT_SECONDS,
        post=provider_post_guarded(SANDBOX, post),
        sleep=sleep,
    )


# Like a real provider, the sandbox keeps trying for a while (about a quarter
# of an hour): an order still queued for persistence is answered 503 at first.
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
