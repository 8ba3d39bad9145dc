"""The admin's app config, apart from apps.py: Django picks an app's default
config among the AppConfig classes apps.py holds, and AdminConfig is one."""

from django.contrib.admin.apps import AdminConfig


class ShopAdminConfig(AdminConfig):
    """django.contrib.admin with the shop's site as `admin.site`, so every
    ModelAdmin and every `admin.site.admin_view` gets the second factor."""

    default_site = "apps.core.admin_site.ShopAdminSite"
