import logging

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from redis.exceptions import RedisError

from apps.catalog.models import Product, ProductPriceTier

from .services import stock_rules_publish

logger = logging.getLogger(__name__)


@receiver(post_save, sender=Product)
def _publish_sale_rules(sender, instance, **kwargs):
    # The checkout script reads the rules from Redis; an edit applies at once.
    def publish():
        try:
            stock_rules_publish(product=instance)
        except RedisError:
            logger.warning("sale rules of %s not published (Redis unreachable); warm_stock will", instance.sku)

    transaction.on_commit(publish)


@receiver([post_save, post_delete], sender=ProductPriceTier)
def _publish_price_tiers(sender, instance, **kwargs):
    # The tiers are part of the rules; read again after commit, so the last
    # of an admin page's inline saves publishes them all.
    def publish():
        product = Product.objects.using("default").filter(pk=instance.product_id).first()
        if product is None:
            return
        try:
            stock_rules_publish(product=product)
        except RedisError:
            logger.warning("price tiers of %s not published (Redis unreachable); warm_stock will", product.sku)

    transaction.on_commit(publish)
