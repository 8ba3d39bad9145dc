from django.db import models
from django.utils.translation import gettext_lazy as _


class PaymentEvent(models.Model):
    """One provider notification that changed state. The unique (provider,
    event_id) pair is the dedupe: it is written in the same transaction as the
    order's state change, so a notification delivered ten times acts once."""

    class Kind(models.TextChoices):
        PAID = "paid", _("paid")
        REFUNDED = "refunded", _("refunded")

    provider = models.CharField(_("provider"), max_length=32)
    event_id = models.CharField(_("event id"), max_length=128)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    order = models.ForeignKey(
        "orders.Order", on_delete=models.PROTECT, related_name="payment_events", verbose_name=_("order")
    )
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3)
    # A refund: the event id of the payment it returns, when the provider
    # names it (the payment's own notification may arrive later, or never).
    refunds_event_id = models.CharField(_("refunds payment"), max_length=128, blank=True)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("payment event")
        verbose_name_plural = _("payment events")
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="payment_event_unique"),
        ]

    def __str__(self):
        return f"{self.provider}:{self.event_id}"


class ProviderPayment(models.Model):
    """A payment opened at a provider for an order (Stripe: a Checkout Session
    id), so the shop can later ask about it (active query) and close it. Not
    tied to the order row by a key: a payment may be opened while the order
    is still a reservation in Redis."""

    order_no = models.CharField(_("order number"), max_length=32, db_index=True)
    provider = models.CharField(_("provider"), max_length=32)
    reference = models.CharField(_("provider reference"), max_length=255)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("provider payment")
        verbose_name_plural = _("provider payments")
        constraints = [
            models.UniqueConstraint(fields=["provider", "reference"], name="provider_payment_unique"),
        ]

    def __str__(self):
        return f"{self.provider}:{self.reference}"


class PaymentMethodChoice(models.Model):
    """The merchant's say on a payment method: shown to buyers or not, under
    which label, in which place. A method with no row is shown under its
    default label after those with one; a method whose provider is not
    enabled (PAYMENT_PROVIDERS) or does not take the order's currency is never
    shown, whatever its row says."""

    method = models.CharField(_("method"), max_length=40, unique=True, help_text=_("e.g. epay.alipay or stripe"))
    label = models.CharField(_("label"), max_length=60, blank=True, help_text=_("Empty: the default label."))
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    enabled = models.BooleanField(_("shown to buyers"), default=True)

    class Meta:
        ordering = ["position", "method"]
        verbose_name = _("payment method")
        verbose_name_plural = _("payment methods")

    def __str__(self):
        return self.method
