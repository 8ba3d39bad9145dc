from .selectors import shop_settings_get


def shop_settings(request) -> dict:
    """Template context processor: `shop`, the merchant's name, logo, banner,
    footer and contact in the active language (apps.core.selectors.ShopInfo)."""
    return {"shop": shop_settings_get()}
