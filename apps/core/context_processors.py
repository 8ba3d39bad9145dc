from django.utils.functional import SimpleLazyObject

from .selectors import shop_settings_get


def shop_settings(request) -> dict:
    """Template context processor: `shop`, the merchant's name, logo, banner,
    footer and contact in the active language (apps.core.selectors.ShopInfo).
    Lazy: a page that shows none of it (the API docs) reads nothing."""
    return {"shop": SimpleLazyObject(shop_settings_get)}
