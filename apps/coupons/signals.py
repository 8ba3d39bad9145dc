"""Drop a coupon's cached terms when the merchant edits it, so checkout
applies the edit at once."""

import logging

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from redis.exceptions import RedisError

from .models import Coupon
from .selectors import coupon_cache_key

logger = logging.getLogger(__name__)


def _drop(codes: set[str]) -> None:
    keys = [coupon_cache_key(code) for code in codes if code]

    def delete():
        try:
            cache.delete_many(keys)
        except RedisError:
            logger.warning("coupon cache not cleared (Redis unreachable); entries expire within their TTL")

    delete()
    transaction.on_commit(delete)


@receiver(pre_save, sender=Coupon)
def _remember_stored_code(sender, instance, **kwargs):
    instance._stored_code = Coupon.objects.filter(pk=instance.pk).values_list("code", flat=True).first()


@receiver([post_save, post_delete], sender=Coupon)
def _drop_cached_coupon(sender, instance, **kwargs):
    _drop({instance.code, getattr(instance, "_stored_code", None)} - {None})


@receiver(m2m_changed, sender=Coupon.products.through)
def _drop_cached_coupon_products(sender, instance, **kwargs):
    if isinstance(instance, Coupon):
        _drop({instance.code})
    else:  # changed from the product's side
        _drop(set(instance.coupons.values_list("code", flat=True)))
