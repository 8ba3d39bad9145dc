"""Reads of the notification settings and the stock levels alerts compare."""

from apps.cardkeys.models import CardKey

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
