from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


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
