from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from apps.core.admin import ReadOnlyAdmin

from .forms import NotificationSettingsForm
from .models import Delivery, DeliveryAttempt, NotificationSettings, StockAlert
from .selectors import notification_settings_get


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    """One row: the list page opens it directly."""

    form = NotificationSettingsForm
    fieldsets = (
        (_("Events"), {"fields": ("notify_paid_orders", "notify_low_stock", "low_stock_threshold")}),
        (_("Email"), {"fields": ("email_enabled", "email_recipients")}),
        (_("Webhook"), {"fields": ("webhook_enabled", "webhook_url", "webhook_secret", "webhook_secret_set")}),
        (_("Telegram"), {"fields": ("telegram_enabled", "telegram_chat_id", "telegram_bot_token", "bot_token_set")}),
    )
    readonly_fields = ("webhook_secret_set", "bot_token_set")

    @admin.display(description=_("signing secret stored"), boolean=True)
    def webhook_secret_set(self, obj):
        return bool(obj.webhook_secret_encrypted)

    @admin.display(description=_("bot token stored"), boolean=True)
    def bot_token_set(self, obj):
        return bool(obj.telegram_bot_token_encrypted)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        config = notification_settings_get()
        return HttpResponseRedirect(reverse("admin:notifications_notificationsettings_change", args=[config.pk]))


@admin.register(StockAlert)
class StockAlertAdmin(admin.ModelAdmin):
    """Per-product thresholds; the checks add a row for every product with keys."""

    list_display = ("product", "threshold", "is_low", "last_available", "crossings", "checked_at")
    list_editable = ("threshold",)
    list_filter = ("is_low",)
    list_select_related = ("product",)
    fields = ("product", "threshold", "is_low", "last_available", "crossings", "checked_at")
    readonly_fields = ("is_low", "last_available", "crossings", "checked_at")


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ("number", "at", "succeeded", "http_status", "error", "retry_in_seconds")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    """Every notification sent or being retried, with each attempt."""

    list_display = ("id", "event", "channel", "status", "attempts", "order", "product", "created_at", "sent_at")
    list_filter = ("status", "channel", "event")
    list_select_related = ("order", "product")
    search_fields = ("event_id", "order__order_no")
    fields = (
        "event",
        "channel",
        "event_id",
        "status",
        "attempts",
        "last_error",
        "order",
        "product",
        "subject",
        "text",
        "payload",
        "created_at",
        "sent_at",
    )
    inlines = [DeliveryAttemptInline]
