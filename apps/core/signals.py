"""Drop the cached shop settings when the merchant saves them, so the change
shows at once (in other processes within SHOP_SETTINGS_MEMO_SECONDS)."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import ShopSettings
from .selectors import shop_settings_forget


@receiver([post_save, post_delete], sender=ShopSettings)
def _drop_cached_shop_settings(sender, instance, **kwargs):
    # Now, and again after commit: a reader between the two would otherwise
    # cache the pre-commit row for a whole TTL.
    shop_settings_forget()
    transaction.on_commit(shop_settings_forget)
