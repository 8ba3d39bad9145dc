import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from apps.core.images import image_validate


class Category(models.Model):
    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=100, unique=True)
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)

    class Meta:
        ordering = ["sort_order", "id"]
        verbose_name = _("category")
        verbose_name_plural = _("categories")

    def __str__(self):
        return self.name


class Product(models.Model):
    class Delivery(models.TextChoices):
        # Each buyer gets keys of their own from the uploaded pool (the default).
        KEYS = "keys", _("keys from the pool, one per piece")
        # Every buyer gets the same key (a shared download code); stock is a number.
        REUSABLE_KEY = "reusable_key", _("one reusable key for every buyer")
        # The merchant delivers by hand (e.g. a top-up); stock is a number.
        MANUAL = "manual", _("delivered by hand by the merchant")

    category = models.ForeignKey(
        Category, on_delete=models.PROTECT, related_name="products", null=True, blank=True, verbose_name=_("category")
    )
    sku = models.CharField(_("SKU"), max_length=64, unique=True)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    price = models.DecimalField(_("price"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3, default=settings.DEFAULT_CURRENCY)
    is_active = models.BooleanField(_("active"), default=True)
    sale_starts_at = models.DateTimeField(_("sale starts at"), null=True, blank=True)
    sale_ends_at = models.DateTimeField(_("sale ends at"), null=True, blank=True)
    per_buyer_limit = models.PositiveIntegerField(_("per-buyer limit"), default=5)
    max_per_order = models.PositiveIntegerField(_("max quantity per order"), default=5)
    # Seconds a buyer must have had the product page open before checkout accepts
    # the purchase (a bot that posts straight away is refused); enforced by checkout.
    min_page_seconds = models.PositiveIntegerField(_("minimum seconds on page"), default=2)
    # Which identities the per-buyer limit counts by, beyond the email (anti-scalping):
    # a buyer is under the limit only if every identity turned on here is.
    limit_by_account = models.BooleanField(_("limit per logged-in account"), default=False)
    limit_by_device = models.BooleanField(_("limit per device cookie"), default=False)
    limit_by_ip = models.BooleanField(_("limit per client IP"), default=False)
    # Unpaid reservations one buyer may hold at once, so nobody holds stock hostage.
    max_unpaid_per_buyer = models.PositiveIntegerField(_("unpaid reservations per buyer"), default=1)
    # The merchant's kill switch: checkout answers "sale paused" while it is on.
    sale_paused = models.BooleanField(_("sale paused"), default=False)
    # The merchant's picture; the storefront shows the two smaller WebP copies
    # made from it when it is saved (services.product_image_renditions_prepare),
    # and the letter tile when there is none.
    image = models.ImageField(
        _("image"),
        upload_to="products/%Y/%m/",
        blank=True,
        validators=[image_validate],
        help_text=_("JPEG, PNG or WebP. Shown on the product card and page; without one, a letter tile."),
    )
    image_card = models.ImageField(_("card image"), upload_to="products/renditions/", blank=True, editable=False)
    image_page = models.ImageField(_("page image"), upload_to="products/renditions/", blank=True, editable=False)
    delivery_kind = models.CharField(_("delivery"), max_length=16, choices=Delivery.choices, default=Delivery.KEYS)
    # Units still on sale of a product not sold from the key pool (reusable key,
    # manual delivery): the gate's stock is built from it as it is from the
    # available keys, and a delivery takes from it in the transaction that
    # marks the order delivered. Changed only through catalog.services.
    stock_quantity = models.PositiveIntegerField(
        _("stock"),
        default=0,
        help_text=_(
            "Units on sale of a reusable-key or manual product; each delivery takes from it. "
            "Products sold from the key pool count their available keys instead."
        ),
    )
    # Fernet token (CARDKEY_ENCRYPTION_KEYS, apps.cardkeys.crypto) of the key
    # every buyer of a reusable-key product gets; never in Redis.
    reusable_key_encrypted = models.TextField(_("encrypted reusable key"), blank=True, db_collation="ascii_bin")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("product")
        verbose_name_plural = _("products")
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gt=0), name="product_price_positive"),
            models.CheckConstraint(condition=models.Q(max_per_order__gte=1), name="product_max_per_order_min_1"),
            models.CheckConstraint(condition=models.Q(per_buyer_limit__gte=1), name="product_per_buyer_limit_min_1"),
            models.CheckConstraint(condition=models.Q(max_unpaid_per_buyer__gte=1), name="product_max_unpaid_min_1"),
        ]

    def __str__(self):
        return f"{self.title} ({self.sku})"

    @property
    def sells_from_pool(self) -> bool:
        """Stock is the available keys (else the merchant's stock_quantity)."""
        return self.delivery_kind == self.Delivery.KEYS

    def sale_state(self, now=None) -> str:
        """'not_started', 'open' or 'ended', from the sale window."""
        now = now or timezone.now()
        if self.sale_starts_at and now < self.sale_starts_at:
            return "not_started"
        if self.sale_ends_at and now >= self.sale_ends_at:
            return "ended"
        return "open"


class ProductPriceTier(models.Model):
    """A wholesale price: from `min_quantity` pieces in one order, each costs
    `unit_price` (the highest tier an order reaches applies). The checkout
    script reads the tiers from the product's rules in Redis, so the price an
    order gets is the gate's, like the base price."""

    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="price_tiers", verbose_name=_("product")
    )
    min_quantity = models.PositiveIntegerField(_("from quantity"))
    unit_price = models.DecimalField(_("unit price"), max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["min_quantity"]
        verbose_name = _("wholesale price")
        verbose_name_plural = _("wholesale prices")
        constraints = [
            models.UniqueConstraint(fields=["product", "min_quantity"], name="price_tier_unique_quantity"),
            models.CheckConstraint(condition=models.Q(min_quantity__gte=2), name="price_tier_min_quantity_2"),
            models.CheckConstraint(condition=models.Q(unit_price__gt=0), name="price_tier_price_positive"),
        ]

    def __str__(self):
        return f"≥{self.min_quantity}: {self.unit_price}"


class ProductInputField(models.Model):
    """Something the buyer types at checkout for this product (a game account
    id, a region), validated there and kept encrypted on the order for the
    merchant (apps/orders/input_fields.py)."""

    class Kind(models.TextChoices):
        TEXT = "text", pgettext_lazy("input field kind", "text")
        NUMBER = "number", _("number")
        EMAIL = "email", pgettext_lazy("input field kind", "email")
        SELECT = "select", _("choice from a list")

    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="input_fields", verbose_name=_("product")
    )
    key = models.SlugField(
        _("key"), max_length=32, help_text=_("A short name for the field in the API (letters, digits, - and _).")
    )
    label_zh = models.CharField(_("label (Chinese)"), max_length=100)
    label_en = models.CharField(_("label (English)"), max_length=100)
    kind = models.CharField(_("type"), max_length=10, choices=Kind.choices, default=Kind.TEXT)
    choices = models.TextField(_("choices"), blank=True, help_text=_("For a choice from a list: one option per line."))
    required = models.BooleanField(_("required"), default=True)
    pattern = models.CharField(
        _("validation pattern"),
        max_length=200,
        blank=True,
        help_text=_("A regular expression the whole value must match, e.g. [0-9]{6,12}. Empty: any value."),
    )
    max_length = models.PositiveIntegerField(_("maximum length"), default=100)
    sort_order = models.PositiveIntegerField(_("sort order"), default=0)

    class Meta:
        ordering = ["sort_order", "id"]
        verbose_name = _("buyer input field")
        verbose_name_plural = _("buyer input fields (asked at checkout)")
        constraints = [
            models.UniqueConstraint(fields=["product", "key"], name="input_field_unique_key"),
            models.CheckConstraint(
                condition=models.Q(max_length__gte=1, max_length__lte=500), name="input_field_max_length_1_500"
            ),
        ]

    def __str__(self):
        return self.key

    def clean(self):
        errors = {}
        if self.pattern:
            try:
                re.compile(self.pattern)
            except re.error:
                errors["pattern"] = _("This is not a valid regular expression.")
        if self.kind == self.Kind.SELECT and not self.choice_list():
            errors["choices"] = _("A choice from a list needs at least one option.")
        if errors:
            raise ValidationError(errors)

    def choice_list(self) -> tuple[str, ...]:
        return tuple(line.strip() for line in self.choices.splitlines() if line.strip())
