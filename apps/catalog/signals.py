from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Product
from .selectors import product_cache_key


@receiver([post_save, post_delete], sender=Product)
def _drop_cached_product(sender, instance, **kwargs):
    # A merchant's edit must show at once, not after the cache TTL.
    cache.delete(product_cache_key(instance.sku))
