"""Reads of the notification settings and the stock levels alerts compare."""

from apps.cardkeys.models import CardKey
from apps.catalog.models import Product

from .models import NotificationSettings


def notification_settings_get() -> NotificationSettings:
    """The shop's settings row, created with its defaults (every channel off) on first use."""
    config, _created = NotificationSettings.objects.get_or_create(pk=1)
    return config


def available_keys_up_to(*, product_id: int, limit: int) -> int:
    """How many keys of the product are available, counting no further than
    `limit`: a low-stock check only needs to know whether it is at most the
    threshold, and a capped count stays cheap on a pool of a million keys."""
    return CardKey.objects.filter(product_id=product_id, status=CardKey.Status.AVAILABLE).values("id")[:limit].count()


def units_available_up_to(*, product: Product, limit: int) -> int:
    """What a low-stock check counts, by the product's kind: its available
    keys (counting no further than `limit`) for a pool product, its stock
    number (read from the primary) for a reusable-key or manual product.
    Keys left over from before a product left the pool count for nothing."""
    if product.sells_from_pool:
        return available_keys_up_to(product_id=product.id, limit=limit)
    return Product.objects.using("default").values_list("stock_quantity", flat=True).get(id=product.id)
