import logging

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from redis.exceptions import RedisError

from apps.catalog.models import Product

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
