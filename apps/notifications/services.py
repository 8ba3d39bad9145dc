"""Merchant notifications: publishing them after an order is paid or a
product runs low, fanning each event out to the enabled channels once, and
sending each delivery with its own retries.

Nothing here may hold up a buyer's keys: the payment only publishes (after
its commit; a broker error is logged, never raised), the fan-out and every
send run in tasks of their own on the notify queue, and a channel that fails
retries alone with backoff (tasks.notification_deliver_task)."""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.cardkeys.models import CardKey
from apps.catalog.models import Product
from apps.orders.models import Order

# The module, not its names: the tasks call back into this one.
from . import tasks
from .channels import ChannelFailed, delivery_send
from .messages import Message, low_stock_message, order_paid_message
from .models import Delivery, DeliveryAttempt, StockAlert
from .selectors import notification_settings_get, units_available_up_to

logger = logging.getLogger(__name__)


def notifications_order_paid_on_commit(*, order_id: int) -> None:
    """Inside the transaction that marks an order paid: after it commits,
    publish the merchant's notification of it. Never raises into the
    payment: a broker error is logged (the order is delivered regardless)."""
    transaction.on_commit(lambda: _order_paid_publish_rollback_unsafe(order_id))


def _order_paid_publish_rollback_unsafe(order_id: int) -> None:
    # A shop that notifies no one publishes nothing: a flash sale's thousands
    # of paid orders cost one primary-key read each, not a task each.
    try:
        config = notification_settings_get()
        wanted = config.notify_paid_orders and bool(config.enabled_channels())
    except Exception:
        logger.exception("notification settings unreadable; the task decides for order id %s", order_id)
        wanted = True
    if wanted:
        _publish_rollback_unsafe(tasks.notify_order_paid_task, order_id)


def notifications_stock_check_rollback_unsafe(*, product_ids: list[int]) -> None:
    """After a fulfilment commit: check these products against their
    low-stock thresholds, in a task. Publishes at once; never raises."""
    if product_ids:
        _publish_rollback_unsafe(tasks.stock_low_check_task, sorted(set(product_ids)))


def _publish_rollback_unsafe(task, *args) -> None:
    try:
        task.delay(*args)
    except Exception:
        logger.exception("notification task %s%r could not be queued", task.name, args)


@transaction.atomic(durable=True)
def notifications_order_paid(*, order_id: int) -> list[int]:
    """Fan a paid order out to the enabled channels, once per channel however
    often this runs. Returns the deliveries published now."""
    config = notification_settings_get()
    channels = config.enabled_channels() if config.notify_paid_orders else []
    if not channels:
        return []
    order = Order.objects.select_related("product").get(id=order_id)
    return _deliveries_create(
        event=Delivery.Event.ORDER_PAID,
        subject_key=f"order:{order.id}",
        channels=channels,
        message=order_paid_message(order=order),
        order=order,
        product=order.product,
    )


def _deliveries_create(
    *, event: str, subject_key: str, channels: list[str], message: Message, order: Order | None, product: Product
) -> list[int]:
    """One delivery per channel, unique on (event, subject, channel); the
    sends are published after the caller's transaction commits. A delivery
    already recorded is published again only if nobody has tried it yet (a
    fan-out that died before publishing); a second send of one is a no-op
    (it is locked and checked), so publishing twice costs nothing."""
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = {
        "id": event_id,
        "type": event,
        "created": int(timezone.now().timestamp()),
        "data": message.data(),
    }
    to_send = []
    for channel in channels:
        dedupe_key = f"{event}:{subject_key}:{channel}"
        try:
            with transaction.atomic():
                delivery = Delivery.objects.create(
                    event=event,
                    channel=channel,
                    event_id=event_id,
                    dedupe_key=dedupe_key,
                    order=order,
                    product=product,
                    subject=message.title[:200],
                    text=message.text(),
                    payload=payload,
                    buyer_input_sealed=message.sealed(),
                )
        except IntegrityError:
            delivery = Delivery.objects.filter(
                dedupe_key=dedupe_key, status=Delivery.Status.PENDING, attempts=0
            ).first()
            if delivery is None:
                continue
        to_send.append(delivery.id)
    for delivery_id in to_send:
        tasks.notification_deliver_task.delay_on_commit(delivery_id)
    return to_send


@dataclass
class SendOutcome:
    sent: bool
    # Seconds until the next try; None: no retry (sent, given up, or nothing to do).
    retry_in: int | None = None


def notification_deliver(*, delivery_id: int, wait_for_attempt: Callable[[int, int], int]) -> SendOutcome:
    """Try a delivery once and record the attempt. `wait_for_attempt(number,
    retry_after)` gives the countdown before try `number + 1`; after
    NOTIFY_MAX_ATTEMPTS tries, or a failure retrying cannot help, the
    delivery is `failed` for good. A delivery sent already is left alone.

    The row stays locked while it is sent, so a second task for it (a
    duplicate publish, a redelivered message) waits and then finds it sent."""
    with transaction.atomic(durable=True):
        delivery = Delivery.objects.select_for_update().filter(id=delivery_id).first()
        if delivery is None or delivery.status != Delivery.Status.PENDING:
            return SendOutcome(sent=delivery is not None and delivery.status == Delivery.Status.SENT)
        number = delivery.attempts + 1
        attempt = DeliveryAttempt(delivery=delivery, number=number, succeeded=False)
        config = notification_settings_get()
        try:
            attempt.http_status = delivery_send(delivery=delivery, config=config)
        except ChannelFailed as exc:
            attempt.http_status = exc.http_status
            attempt.error = exc.reason[:2000]
            if not exc.permanent and number < settings.NOTIFY_MAX_ATTEMPTS:
                attempt.retry_in_seconds = wait_for_attempt(number, exc.retry_after)
            delivery.last_error = attempt.error
            if attempt.retry_in_seconds is None:
                delivery.status = Delivery.Status.FAILED
                logger.warning("notification %s via %s failed for good: %s", delivery.event_id, delivery.channel, exc)
        else:
            attempt.succeeded = True
            delivery.status = Delivery.Status.SENT
            delivery.sent_at = timezone.now()
        delivery.attempts = number
        delivery.save(update_fields=["status", "attempts", "last_error", "sent_at"])
        attempt.save()
    return SendOutcome(sent=attempt.succeeded, retry_in=attempt.retry_in_seconds)


def notifications_stock_check(*, product_ids: list[int] | None = None) -> list[int]:
    """Compare products' stock with their low-stock thresholds (all products
    with stock to run low on when none are named: a pool product with keys
    uploaded, every reusable-key and manual product). The product's kind
    decides what is counted (selectors.units_available_up_to). A product
    that falls to its threshold or below is announced once, and re-armed
    once a restock lifts it above. Returns the products announced now."""
    config = notification_settings_get()
    if not config.notify_low_stock:
        return []
    has_keys = Exists(CardKey.objects.filter(product_id=OuterRef("pk")))
    products = Product.objects.filter(Q(has_keys) | ~Q(delivery_kind=Product.Delivery.KEYS))
    if product_ids is not None:
        products = products.filter(id__in=product_ids)
    announced = []
    for product in products.order_by("id"):
        if _product_stock_check(
            product=product, shop_threshold=config.low_stock_threshold, channels=config.enabled_channels()
        ):
            announced.append(product.id)
    return announced


def _product_stock_check(*, product: Product, shop_threshold: int, channels: list[str]) -> bool:
    """One product, under its alert row's lock (two checks at once announce
    one crossing once). True if it crossed into low now."""
    StockAlert.objects.get_or_create(product=product)  # a concurrent create is caught inside
    with transaction.atomic(durable=True):
        alert = StockAlert.objects.select_for_update().get(product=product)
        threshold = shop_threshold if alert.threshold is None else alert.threshold
        available = units_available_up_to(product=product, limit=threshold + 1)
        low = available <= threshold
        crossed = low and not alert.is_low
        alert.is_low = low
        alert.last_available = available if low else None
        alert.checked_at = timezone.now()
        if crossed:
            alert.crossings += 1
        alert.save()
        if crossed:
            # In the same transaction as the crossing: an announcement is
            # recorded with it or not at all.
            _deliveries_create(
                event=Delivery.Event.STOCK_LOW,
                subject_key=f"product:{product.id}:{alert.crossings}",
                channels=channels,
                message=low_stock_message(product=product, available=available, threshold=threshold),
                order=None,
                product=product,
            )
    return crossed
