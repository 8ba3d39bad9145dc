"""Expiry: orders unpaid past their reservation (RESERVATION_TTL) expire and
their stock returns to the gate; any payment opened at a provider is closed.
An order with a started payment gets PAYMENT_QUERY_GRACE_SECONDS more while
the shop asks its provider. A payment that arrives later is handled by
payment.py (delivered if keys remain, else refunded)."""

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from apps.core import metrics
from apps.coupons.services import coupon_use_return_rollback_unsafe
from apps.payments.provider_payments import orders_with_started_payments
from apps.payments.tasks import payment_close_task
from apps.stock import services as stock

from ..models import Order
from ..status_records import order_status_records_drop_on_commit

logger = logging.getLogger(__name__)


def order_expire_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Expire orders unpaid past their reservation and return their stock.
    The database transition comes first; the stock returns after commit (and
    reconciliation returns it if Redis could not be reached then)."""
    now = now or timezone.now()
    grace = timezone.timedelta(seconds=settings.PAYMENT_QUERY_GRACE_SECONDS)
    with transaction.atomic(durable=True):
        due = list(
            Order.objects.select_for_update(skip_locked=True)
            .filter(status=Order.Status.AWAITING_PAYMENT, reserved_until__lt=now)
            # A payment started at a provider: wait a little longer while the
            # shop asks it (apps.payments.services.payments_query_expiring).
            .exclude(order_no__in=orders_with_started_payments(), reserved_until__gte=now - grace)
            .order_by("id")[:limit]
        )
        if not due:
            return 0
        Order.objects.filter(id__in=[o.id for o in due], status=Order.Status.AWAITING_PAYMENT).update(
            status=Order.Status.EXPIRED, updated_at=now
        )
        order_status_records_drop_on_commit(order_nos=[o.order_no for o in due])
        transaction.on_commit(lambda: metrics.orders_expired(count=len(due)))
        transaction.on_commit(lambda: _release_unpaid_rollback_unsafe(due))
        # Close what the buyers may still pay at a provider (a Stripe session).
        for order_no in Order.objects.filter(
            id__in=[o.id for o in due], order_no__in=orders_with_started_payments()
        ).values_list("order_no", flat=True):
            payment_close_task.delay_on_commit(order_no)
    return len(due)


def _release_unpaid_rollback_unsafe(orders: list[Order]) -> None:
    for order in orders:
        try:
            stock.stock_reservation_release_unpaid(product_id=order.product_id, order_no=order.order_no)
        except RedisError:
            logger.warning("order %s expired; its stock returns at the next reconcile", order.order_no)
        # An expired order no longer counts: its coupon use returns (a late
        # payment takes it again, payment._order_late_payment).
        coupon_use_return_rollback_unsafe(order=order)
