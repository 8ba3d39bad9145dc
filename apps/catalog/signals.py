"""Drop cached catalog entries when a merchant edits the catalog, so an edit
shows at once rather than after PRODUCT_CACHE_TTL."""

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from redis.exceptions import RedisError

from .models import Category, Product, ProductInputField, ProductPriceTier
from .selectors import (
    EDITED_AT_CACHE_KEY,
    LISTING_CACHE_KEY,
    cache_forget,
    catalog_replica_stale_window,
    product_cache_key,
)

logger = logging.getLogger(__name__)


def _drop(keys: list[str]) -> None:
    # Now, and again after commit: a reader between the two could otherwise
    # cache the pre-commit row for a whole TTL.
    _delete(keys)
    transaction.on_commit(lambda: _delete(keys))


def _delete(keys: list[str]) -> None:
    cache_forget(keys)
    # A merchant's save must not fail because Redis is down; the stale entries
    # then live out their TTL (PRODUCT_CACHE_TTL).
    try:
        if settings.REPLICA_ENABLED:
            # First: a reader that misses the cache from now on and reads a
            # replica that lacks this edit does not cache what it read.
            window = catalog_replica_stale_window()
            cache.set(EDITED_AT_CACHE_KEY, time.time(), timeout=math.ceil(window) + 1)
        cache.delete_many(keys)
    except RedisError:
        logger.warning("catalog cache not cleared (Redis unreachable); entries expire within their TTL")


@receiver(pre_save, sender=Product)
def _remember_stored_sku(sender, instance, **kwargs):
    # A renamed SKU must also drop the entry cached under the old one.
    instance._stored_sku = None
    if instance.pk:
        instance._stored_sku = (
            Product.objects.using("default").filter(pk=instance.pk).values_list("sku", flat=True).first()
        )


@receiver([post_save, post_delete], sender=Product)
def _drop_cached_product(sender, instance, **kwargs):
    skus = {instance.sku, getattr(instance, "_stored_sku", None)} - {None}
    _drop([LISTING_CACHE_KEY, *(product_cache_key(sku) for sku in skus)])


@receiver([post_save, post_delete], sender=Category)
def _drop_cached_category(sender, instance, **kwargs):
    # Cached product info carries its category's name and slug.
    skus = Product.objects.using("default").filter(category_id=instance.pk).values_list("sku", flat=True)
    _drop([LISTING_CACHE_KEY, *(product_cache_key(sku) for sku in skus)])


@receiver([post_save, post_delete], sender=ProductPriceTier)
@receiver([post_save, post_delete], sender=ProductInputField)
def _drop_cached_product_of_tier(sender, instance, **kwargs):
    # Cached product info carries its wholesale prices and checkout fields.
    skus = Product.objects.using("default").filter(pk=instance.product_id).values_list("sku", flat=True)
    _drop([LISTING_CACHE_KEY, *(product_cache_key(sku) for sku in skus)])
