from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


def coupon_code_normalise(code: str) -> str:
    """Codes are case-insensitive: stored and looked up in upper case."""
    return code.strip().upper()


class Coupon(models.Model):
    """A discount code. Its uses are counted in the gate Redis (apps/coupons/services.py),
    taken and given back with the same atomicity as stock; this row holds the terms."""

    class Kind(models.TextChoices):
        PERCENT = "percent", _("percent off")
        FIXED = "fixed", _("amount off")

    code = models.CharField(_("code"), max_length=32, unique=True, help_text=_("Not case-sensitive."))
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.PERCENT)
    # Percent: 0 < value <= 100. Amount off: in the order's currency, once per order.
    value = models.DecimalField(_("value"), max_digits=12, decimal_places=2)
    products = models.ManyToManyField(
        "catalog.Product",
        blank=True,
        related_name="coupons",
        verbose_name=_("products"),
        help_text=_("Leave empty for every product."),
    )
    valid_from = models.DateTimeField(_("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    max_uses = models.PositiveIntegerField(
        _("total uses"),
        null=True,
        blank=True,
        help_text=_("Empty: no limit. Unpaid orders hold a use until they expire."),
    )
    max_uses_per_buyer = models.PositiveIntegerField(
        _("uses per buyer"), null=True, blank=True, help_text=_("Counted by the buyer's email. Empty: no limit.")
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        constraints = [
            models.CheckConstraint(condition=models.Q(value__gt=0), name="coupon_value_positive"),
            models.CheckConstraint(
                condition=~models.Q(kind="percent") | models.Q(value__lte=100), name="coupon_percent_at_most_100"
            ),
        ]

    def __str__(self):
        return self.code

    def save(self, *args, **kwargs):
        # Every writer (admin, shell, fixtures) stores the code as lookups read it.
        self.code = coupon_code_normalise(self.code or "")
        super().save(*args, **kwargs)

    def clean(self):
        self.code = coupon_code_normalise(self.code or "")
        if self.kind == self.Kind.PERCENT and self.value is not None and self.value > 100:
            raise ValidationError({"value": _("A percentage is at most 100.")})
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValidationError({"valid_until": _("The end must come after the start.")})
