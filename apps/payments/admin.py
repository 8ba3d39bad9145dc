from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin

from .models import PaymentEvent


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    """Read-only: events are written by the webhook alone, in the order's
    transaction; editing one would break the one-payment-one-effect record."""

    list_display = ("received_at", "provider", "kind", "event_id", "order", "amount", "currency")
    list_filter = ("provider", "kind")
    search_fields = ("event_id", "order__order_no")
    list_select_related = ("order",)
