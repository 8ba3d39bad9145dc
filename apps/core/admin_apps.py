"""The admin's app config, apart from apps.py: Django picks an app's default
config among the AppConfig classes apps.py holds, and AdminConfig is one.
With it, the configs that give third-party apps in the admin a translated
name (settings.INSTALLED_APPS names these in their place)."""

from axes.apps import AppConfig as AxesAppConfig
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop
from django_otp.plugins.otp_totp.apps import DefaultConfig as TOTPAppConfig


class ShopAdminConfig(AdminConfig):
    """django.contrib.admin with the shop's site as `admin.site`, so every
    ModelAdmin and every `admin.site.admin_view` gets the second factor."""

    default_site = "apps.core.admin_site.ShopAdminSite"


class ShopAxesConfig(AxesAppConfig):
    """django-axes (the admin's sign-in lockouts), named in the admin's language."""

    verbose_name = _("Sign-in lockouts")


class ShopTOTPConfig(TOTPAppConfig):
    """django-otp's TOTP plugin (the admin's second factor), named in the admin's language."""

    verbose_name = _("Admin authenticators")

    def ready(self):
        super().ready()
        # django-otp names its model in English only ("TOTP device", not marked
        # for translation). Migrations read the model's original Meta, so this
        # changes the admin's wording and no migration.
        meta = self.get_model("TOTPDevice")._meta
        meta.verbose_name = _("authenticator")
        meta.verbose_name_plural = _("authenticators")


# django-axes marks its model names for translation but ships no Chinese:
# named here so that makemessages keeps them in the shop's catalogue.
AXES_MODEL_NAMES = (
    gettext_noop("access attempt"),
    gettext_noop("access attempts"),
    gettext_noop("access failure"),
    gettext_noop("access failures"),
    gettext_noop("access log"),
    gettext_noop("access logs"),
)
