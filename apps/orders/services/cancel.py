"""Cancel: the buyer gives up an unpaid order. Its stock returns at once, any
payment opened at a provider is closed, and a payment that still arrives is
handled as one after expiry (payment.py: delivered if keys remain, otherwise
refunded)."""

import logging

from django.db import transaction
from redis.exceptions import RedisError

from apps.coupons.services import coupon_use_return_rollback_unsafe
from apps.payments.tasks import payment_close_task
from apps.stock import services as stock

from ..exceptions import OrderNotCancellable, OrderPending
from ..identity import order_number_product_id
from ..models import Order
from ..status_records import order_status_records_drop_on_commit
from .persistence import order_persist_queued

logger = logging.getLogger(__name__)


def order_cancel(*, order_no: str) -> Order:
    """Cancel an order that is queued or awaiting payment. Caller checked the
    buyer's token. Raises OrderNotCancellable for any other state, and
    OrderPending while a queued order cannot be written yet (Redis or the
    database is away: the buyer retries)."""
    if not Order.objects.filter(order_no=order_no).exists():
        # Still a reservation in Redis: make it an order first, so that the
        # cancel and a payment racing it meet on the same row lock.
        product_id = order_number_product_id(order_no)
        if product_id is not None:
            try:
                order_persist_queued(product_ids=[product_id])
            except RedisError:
                raise OrderPending() from None
    return _order_to_cancelled(order_no=order_no)


@transaction.atomic(durable=True)
def _order_to_cancelled(*, order_no: str) -> Order:
    order = Order.objects.select_for_update().filter(order_no=order_no).first()
    if order is None:
        raise OrderPending()
    if order.status == Order.Status.CANCELLED:
        return order  # cancelled twice: the same answer
    if order.status != Order.Status.AWAITING_PAYMENT:
        raise OrderNotCancellable()
    order.status = Order.Status.CANCELLED
    order.save(update_fields=["status", "updated_at"])
    order_status_records_drop_on_commit(order_nos=[order.order_no])
    transaction.on_commit(lambda: _release_rollback_unsafe(order))
    payment_close_task.delay_on_commit(order.order_no)
    return order


def _release_rollback_unsafe(order: Order) -> None:
    """Unpaid only: a payment that reached the gate first keeps its stock (it
    then takes the late-payment path). If Redis cannot be reached,
    reconciliation returns the stock."""
    try:
        stock.stock_reservation_release_unpaid(product_id=order.product_id, order_no=order.order_no)
    except RedisError:
        logger.warning("order %s cancelled; its stock returns at the next reconcile", order.order_no)
    coupon_use_return_rollback_unsafe(order=order)
