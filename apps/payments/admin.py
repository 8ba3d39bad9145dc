from django.contrib import admin

from .models import PaymentEvent


@admin.register(PaymentEvent)
class PaymentEventAdmin(admin.ModelAdmin):
    """Read-only: events are written by the webhook alone, in the order's
    transaction; editing one would break the one-payment-one-effect record."""

    list_display = ("received_at", "provider", "kind", "event_id", "order", "amount", "currency")
    list_filter = ("provider", "kind")
    search_fields = ("event_id", "order__order_no")
    list_select_related = ("order",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
