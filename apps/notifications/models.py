"""Merchant notifications: the shop's channel settings, per-product low-stock
state, and one delivery record per (event, channel) with its attempts.

Secrets (the webhook signing secret, the Telegram bot token) are stored only
as Fernet tokens under CARDKEY_ENCRYPTION_KEYS (apps.cardkeys.crypto), set
through the admin's write-only fields; see docs/notifications.md."""

from django.db import models
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from apps.cardkeys.crypto import decrypt_secret


class NotificationSettings(models.Model):
    """The shop's one row (pk 1, see selectors.notification_settings_get)."""

    notify_paid_orders = models.BooleanField(_("notify on each paid order"), default=True)
    notify_low_stock = models.BooleanField(_("notify on low stock"), default=True)
    low_stock_threshold = models.PositiveIntegerField(
        _("low-stock threshold"),
        default=10,
        help_text=_(
            "Notify when a product's available keys fall to this number or below (unless the product sets its own)."
        ),
    )
    email_enabled = models.BooleanField(_("email enabled"), default=False)
    email_recipients = models.TextField(
        _("email recipients"), blank=True, help_text=_("The merchant's addresses, one a line or separated by commas.")
    )
    webhook_enabled = models.BooleanField(_("webhook enabled"), default=False)
    webhook_url = models.URLField(_("webhook URL"), max_length=500, blank=True)
    # Fernet token; the plaintext is only ever set through the admin form.
    webhook_secret_encrypted = models.TextField(_("encrypted webhook secret"), blank=True, db_collation="ascii_bin")
    telegram_enabled = models.BooleanField(_("Telegram enabled"), default=False)
    telegram_chat_id = models.CharField(_("Telegram chat id"), max_length=64, blank=True)
    telegram_bot_token_encrypted = models.TextField(
        _("encrypted Telegram bot token"), blank=True, db_collation="ascii_bin"
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("notification settings")
        verbose_name_plural = _("notification settings")

    def __str__(self):
        return str(capfirst(_("notification settings")))

    @property
    def webhook_secret(self) -> str:
        return decrypt_secret(self.webhook_secret_encrypted) if self.webhook_secret_encrypted else ""

    @property
    def telegram_bot_token(self) -> str:
        return decrypt_secret(self.telegram_bot_token_encrypted) if self.telegram_bot_token_encrypted else ""

    def recipient_list(self) -> list[str]:
        return [a.strip() for a in self.email_recipients.replace(",", "\n").splitlines() if a.strip()]

    def enabled_channels(self) -> list[str]:
        channels = []
        if self.email_enabled and self.recipient_list():
            channels.append(Delivery.Channel.EMAIL)
        if self.webhook_enabled and self.webhook_url and self.webhook_secret_encrypted:
            channels.append(Delivery.Channel.WEBHOOK)
        if self.telegram_enabled and self.telegram_chat_id and self.telegram_bot_token_encrypted:
            channels.append(Delivery.Channel.TELEGRAM)
        return channels


class StockAlert(models.Model):
    """A product's low-stock threshold and whether it is below it now: an
    alert fires when the product crosses into low (is_low becomes true) and
    re-arms when a restock lifts it above the threshold."""

    product = models.OneToOneField(
        "catalog.Product", on_delete=models.CASCADE, related_name="+", verbose_name=_("product")
    )
    threshold = models.PositiveIntegerField(
        _("low-stock threshold"), null=True, blank=True, help_text=_("Empty: the shop-wide threshold.")
    )
    is_low = models.BooleanField(_("low now"), default=False)
    # How many times it crossed into low: part of each alert's dedupe key.
    crossings = models.PositiveIntegerField(_("alerts sent"), default=0)
    last_available = models.PositiveIntegerField(_("available keys at the last check"), null=True, blank=True)
    checked_at = models.DateTimeField(_("checked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("low-stock threshold")
        verbose_name_plural = _("low-stock thresholds")

    def __str__(self):
        return str(self.product)


class Delivery(models.Model):
    """One event told through one channel, at most once: `dedupe_key` is
    unique per (event, subject, channel). The message is built once, when the
    event happens, so every retry sends the same body and event id."""

    class Event(models.TextChoices):
        ORDER_PAID = "order.paid", _("order paid")
        STOCK_LOW = "stock.low", _("low stock")

    class Channel(models.TextChoices):
        EMAIL = "email", _("email")
        WEBHOOK = "webhook", _("webhook")
        TELEGRAM = "telegram", _("Telegram")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")

    event = models.CharField(_("event"), max_length=20, choices=Event.choices)
    channel = models.CharField(_("channel"), max_length=10, choices=Channel.choices)
    # The same for every channel of one event; the webhook sends it for dedupe.
    event_id = models.CharField(_("event id"), max_length=40, db_index=True)
    dedupe_key = models.CharField(_("deduplication key"), max_length=100, unique=True)
    order = models.ForeignKey(
        "orders.Order", on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=_("order")
    )
    product = models.ForeignKey(
        "catalog.Product", on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=_("product")
    )
    subject = models.CharField(_("subject"), max_length=200)
    text = models.TextField(_("text"))
    # The webhook's JSON body; never holds a key secret (tests check).
    payload = models.JSONField(_("payload"))
    # What the buyer typed in the product's checkout fields, encrypted
    # (apps.cardkeys.crypto) as on the order: added to text and payload only
    # when sending (messages.delivery_text, delivery_payload).
    buyer_input_sealed = models.TextField(_("encrypted checkout fields"), blank=True, db_collation="ascii_bin")
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")

    def __str__(self):
        return f"{self.event} {self.channel} {self.event_id}"


class DeliveryAttempt(models.Model):
    """One try of a delivery, as the admin shows it."""

    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="attempt_records", verbose_name=_("notification")
    )
    number = models.PositiveIntegerField(_("attempt"))
    at = models.DateTimeField(_("at"), auto_now_add=True)
    succeeded = models.BooleanField(_("succeeded"))
    http_status = models.PositiveIntegerField(_("HTTP status"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    # The countdown of the retry this failure scheduled; empty: none (sent, or given up).
    retry_in_seconds = models.PositiveIntegerField(_("next try in (seconds)"), null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="deliveryattempt_unique_number")]

    def __str__(self):
        return f"#{self.number}"
