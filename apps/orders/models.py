from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .identity import buyer_identity


class Order(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        AWAITING_PAYMENT = "awaiting_payment", _("awaiting payment")
        PAID = "paid", _("paid")
        DELIVERED = "delivered", _("delivered")
        EXPIRED = "expired", _("expired")
        # The buyer cancelled it unpaid; its stock returned at once.
        CANCELLED = "cancelled", _("cancelled")
        REFUND_PENDING = "refund_pending", _("refund pending")
        REFUNDED = "refunded", _("refunded")
        NEEDS_ATTENTION = "needs_attention", _("needs attention")

    # Random, so exposing it in URLs and emails reveals nothing about volume.
    order_no = models.CharField(_("order number"), max_length=32, unique=True)
    product = models.ForeignKey(
        "catalog.Product", on_delete=models.PROTECT, related_name="orders", verbose_name=_("product")
    )
    buyer_email = models.EmailField(_("buyer email"), max_length=254, db_index=True)
    quantity = models.PositiveIntegerField(_("quantity"))
    unit_price = models.DecimalField(_("unit price"), max_digits=12, decimal_places=2)
    # What the buyer pays: unit price × quantity, less the coupon's discount
    # (apps/orders/pricing.py), fixed at checkout.
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    # The coupon checkout applied, and what it took off (amount is after it).
    # A merchant ends a coupon by turning it off (the admin cannot delete
    # one). SET_NULL, not PROTECT: PROTECT guards only orders already written,
    # while reservations still queued with the coupon would then be refused
    # by the foreign key and lost; coupon_code and discount keep what the
    # order was placed with.
    coupon = models.ForeignKey(
        "coupons.Coupon",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="orders",
        verbose_name=_("coupon"),
    )
    coupon_code = models.CharField(_("coupon code"), max_length=32, blank=True)
    discount = models.DecimalField(_("discount"), max_digits=12, decimal_places=2, default=0)
    # What the buyer typed in the product's checkout fields, encrypted like the
    # keys (apps/orders/input_fields.py; read with order_input_values).
    input_values = models.TextField(_("buyer input"), blank=True)
    currency = models.CharField(_("currency"), max_length=3)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.AWAITING_PAYMENT)
    # The buyer identities (hashes, space-separated) the per-buyer limits counted
    # this order against; kept so the Redis gate can be rebuilt from MariaDB.
    buyer_identities = models.TextField(_("buyer identities (hashed)"), blank=True)
    # SHA-256 (hex) of the buyer's access token; the token itself is never stored.
    access_token_hash = models.CharField(_("access token hash"), max_length=64)
    # Why an operator must look at this order (needs_attention / refund_pending).
    attention_reason = models.TextField(_("attention reason"), blank=True)
    # Money beyond the order's price arrived (a second payment, or a payment
    # after the refund): each extra payment is refunded through its provider.
    # Stays set as the visible record for the operator.
    overpaid = models.BooleanField(_("overpaid"), default=False)
    reserved_until = models.DateTimeField(_("reserved until"), null=True, blank=True)
    # The language the buyer shopped in: the order's mails are written in it.
    language = models.CharField(
        _("language"), max_length=10, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    # Set once the delivery mail went out, so a mail task delivered again (a
    # worker lost mid-batch, a retry outliving the broker's visibility
    # timeout) does not send it twice.
    keys_emailed_at = models.DateTimeField(_("keys emailed at"), null=True, blank=True)
    # What the order received other than keys of the pool, as Fernet tokens
    # (apps.cardkeys.crypto): the product's reusable key as it was at delivery,
    # or the merchant's note of a manual delivery, and who delivered it.
    reusable_key_encrypted = models.TextField(_("reusable key (encrypted)"), blank=True, db_collation="ascii_bin")
    manual_content_encrypted = models.TextField(_("manual delivery (encrypted)"), blank=True, db_collation="ascii_bin")
    manually_delivered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("delivered by hand by"),
    )

    class Meta:
        ordering = ["-id"]
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        indexes = [
            models.Index(fields=["status", "reserved_until"], name="order_status_reserved_idx"),
            models.Index(fields=["product", "status"], name="order_product_status_idx"),
            # Fulfilment batches take paid orders in id order with SKIP LOCKED:
            # walking this index they lock only the rows they take, so a second
            # worker finds the next batch free (a sort would lock them all first).
            models.Index(fields=["status", "id"], name="order_status_id_idx"),
            # Revenue (the admin's dashboards) reads the orders paid in the last days.
            models.Index(fields=["paid_at"], name="order_paid_at_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="order_quantity_min_1"),
        ]

    def __str__(self):
        return self.order_no

    def buyer_identity_list(self) -> list[str]:
        """The buyer identities the order counts towards (see identity.buyer_identities)."""
        return self.buyer_identities.split() or ["e:" + buyer_identity(email=self.buyer_email)]


# Orders that still hold stock in the gate (their keys are not yet sold).
HOLDING_STATUSES = (Order.Status.AWAITING_PAYMENT, Order.Status.PAID)
# Orders that count towards a buyer's per-product limit.
COUNTED_STATUSES = (
    Order.Status.AWAITING_PAYMENT,
    Order.Status.PAID,
    Order.Status.DELIVERED,
    Order.Status.NEEDS_ATTENTION,
)
