"""Thin Celery tasks of payments. The sandbox's own notification task lives
with the sandbox's server side (sandbox_server.py)."""

from celery import shared_task

# Imported so a worker registers the sandbox's task whatever else it loads.
from . import sandbox_server  # noqa: F401
from .refunds import payment_close_all, payment_refund_request, payment_refund_request_for_event


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def refund_order_task(self, order_id: int):
    try:
        payment_refund_request(order_id=order_id)
    except Exception as exc:
        raise self.retry(exc=exc, countdown=5 * 2**self.request.retries) from exc


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def refund_payment_event_task(self, event_pk: int):
    try:
        payment_refund_request_for_event(event_pk=event_pk)
    except Exception as exc:
        raise self.retry(exc=exc, countdown=5 * 2**self.request.retries) from exc


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def payment_close_task(self, order_no: str):
    """An order ended unpaid (cancelled): close its payment at every enabled
    provider that may have one open, so the buyer cannot pay it there."""
    try:
        payment_close_all(order_no=order_no)
    except Exception as exc:
        raise self.retry(exc=exc, countdown=5 * 2**self.request.retries) from exc
