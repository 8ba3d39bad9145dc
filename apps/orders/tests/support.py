"""Test helpers for the purchase path: a product with keys, warmed in Redis;
checkout and payment in one call; a row lock held as a duplicate payment
notification holds it."""

import threading
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, transaction

from apps.cardkeys.models import CardKey
from apps.cardkeys.tests.factories import CardKeyFactory
from apps.catalog.models import Product
from apps.catalog.tests.factories import ProductFactory
from apps.orders.models import Order
from apps.orders.services import payment, persistence
from apps.orders.services.checkout import order_checkout
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import persist_requested_key
from apps.stock.warmup import stock_warm


def product_with_keys(*, keys: int, warm: bool = True, **fields) -> Product:
    """A product on sale now (no category, no minimum time on page) with `keys`
    available keys, its stock warmed in Redis unless warm=False."""
    defaults = {"category": None, "per_buyer_limit": 5, "max_per_order": 5, "min_page_seconds": 0}
    product = ProductFactory(**{**defaults, **fields})
    add_keys(product=product, count=keys)
    if warm:
        stock_warm(product=product)
    return product


def add_keys(*, product: Product, count: int, prefix: str = "") -> list[str]:
    """`count` more available keys of `product`, inserted at once; returns their secrets."""
    start = CardKey.objects.filter(product=product).count()
    secrets_ = [f"{prefix or product.sku}-KEY-{start + i:06d}" for i in range(count)]
    CardKey.objects.bulk_create(CardKeyFactory.build(product=product, batch=None, secret=s) for s in secrets_)
    return secrets_


def redis_lose_product(product: Product) -> None:
    """What a Redis restart does to one product's gate: every key gone (only
    this environment's keys: the prefix keeps other runs' data safe)."""
    client = stock_redis()
    for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:{{p:{product.id}}}:*"):
        client.delete(key)


def checkout(product, email="buyer@example.com", quantity=1, key=None):
    return order_checkout(sku=product.sku, email=email, quantity=quantity, idempotency_key=key)


def persist_task_marked_waiting(product) -> None:
    """As if a persist task of the product waited in the queue: checkouts from
    now on publish none, so their reservations stay queued in Redis until
    someone drains them (here: the test, or nobody before Redis loses them)."""
    stock_redis().set(persist_requested_key(product.id), "1", px=120_000)


def checkout_queued(product, **fields):
    """A checkout whose reservation stays queued in Redis (not persisted yet)."""
    persist_task_marked_waiting(product)
    return checkout(product, **fields)


def pay(order_no, event_id="evt-1", amount=None):
    order = Order.objects.get(order_no=order_no)
    return payment.order_mark_paid(
        order_no=order_no,
        provider="sandbox",
        event_id=event_id,
        amount=order.amount if amount is None else amount,
        currency=order.currency,
    )


def paid_orders(product, count, *, quantity=1):
    for i in range(count):
        checkout(product, email=f"paid{product.id}-{i}@x.com", quantity=quantity)
    persistence.order_persist_queued()
    for order in Order.objects.filter(product=product, status=Order.Status.AWAITING_PAYMENT).order_by("id"):
        pay(order.order_no, event_id=f"e-{order.order_no}")
    return list(Order.objects.filter(product=product).order_by("id"))


@contextmanager
def order_row_held_briefly(order_id: int, *, seconds: float = 0.5):
    """Another connection holds the order's row lock (as a duplicate payment
    notification being turned away does) from before the block starts until
    `seconds` later; the block runs meanwhile."""
    locked, release = threading.Event(), threading.Event()

    def duplicate_notification_holding_the_row():
        try:
            with transaction.atomic():
                Order.objects.select_for_update().get(id=order_id)
                locked.set()
                release.wait(5)
        finally:
            connection.close()

    holder = threading.Thread(target=duplicate_notification_holding_the_row)
    holder.start()
    assert locked.wait(5)
    timer = threading.Timer(seconds, release.set)
    timer.start()
    try:
        yield
    finally:
        release.set()
        holder.join(5)
    assert not holder.is_alive()
