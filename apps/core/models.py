from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from .images import image_validate


class ShopSettings(models.Model):
    """The merchant's shop-wide texts and logo: one row (pk 1), edited in the
    admin, read through selectors.shop_settings_get (cached; a save drops the
    cached copy). Each text has a field per language (translation.py)."""

    SINGLETON_PK = 1

    # Always 1 (a plain column: MariaDB refuses a CHECK on an AUTO_INCREMENT one).
    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_PK, editable=False)
    # Empty: the storefront's own name ("Card Key Shop", translated).
    name = models.CharField(_("shop name"), max_length=80, blank=True)
    logo = models.ImageField(
        _("logo"),
        upload_to="shop/",
        blank=True,
        validators=[image_validate],
        help_text=_("JPEG, PNG or WebP; shown 32 pixels high beside the shop name. Without one, the default logo."),
    )
    logo_small = models.ImageField(_("logo (header size)"), upload_to="shop/renditions/", blank=True, editable=False)
    banner = models.TextField(
        _("announcement banner"),
        blank=True,
        help_text=_("Shown at the top of every storefront page while the window below is open. Empty: no banner."),
    )
    banner_starts_at = models.DateTimeField(_("banner shown from"), null=True, blank=True)
    banner_ends_at = models.DateTimeField(_("banner shown until"), null=True, blank=True)
    footer = models.TextField(_("footer text"), blank=True)
    contact = models.CharField(
        _("contact"),
        max_length=300,
        blank=True,
        help_text=_("How buyers reach you, e.g. “Email: help@example.com · QQ: 12345 · Telegram: @shop”."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("shop settings")
        verbose_name_plural = _("shop settings")
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="shop_settings_singleton"),
        ]

    def __str__(self):
        return str(_("Shop settings"))

    def banner_window_valid(self) -> bool:
        return not (self.banner_starts_at and self.banner_ends_at and self.banner_ends_at <= self.banner_starts_at)

    def clean(self):
        if not self.banner_window_valid():
            raise ValidationError({"banner_ends_at": _("The banner must end after it starts.")})
