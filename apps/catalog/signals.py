"""Drop cached catalog entries when a merchant edits the catalog, so an edit
shows at once rather than after PRODUCT_CACHE_TTL."""
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from .models import Category, Product
from .selectors import LISTING_CACHE_KEY, product_cache_key


def _drop(keys: list[str]) -> None:
    # Now, and again after commit: a reader between the two could otherwise
    # cache the pre-commit row for a whole TTL.
    cache.delete_many(keys)
    transaction.on_commit(lambda: cache.delete_many(keys))


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
