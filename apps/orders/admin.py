from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from redis.exceptions import RedisError

from .models import Order
from .services.fulfilment import order_fulfilment_retry
from .services.payment import order_refund_start


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Orders change state through the purchase path only; the admin shows them
    and offers the two operator decisions for an order that needs attention."""

    list_display = (
        "order_no",
        "product",
        "buyer_email",
        "quantity",
        "amount",
        "currency",
        "status",
        "created_at",
        "paid_at",
        "delivered_at",
    )
    list_filter = ("status", "product")
    search_fields = ("order_no", "buyer_email")
    list_select_related = ("product",)
    readonly_fields = [f.name for f in Order._meta.fields if f.name != "access_token_hash"]
    exclude = ("access_token_hash",)
    actions = ("retry_fulfilment", "start_refund")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description=_("Retry delivery (after uploading more keys)"))
    def retry_fulfilment(self, request, queryset):
        try:
            count = order_fulfilment_retry(order_ids=list(queryset.values_list("id", flat=True)))
        except RedisError:
            self.message_user(request, _("The stock gate (Redis) is unreachable; try again shortly."), messages.ERROR)
            return
        self.message_user(
            request,
            ngettext("%(n)d order sent back to delivery.", "%(n)d orders sent back to delivery.", count) % {"n": count},
            messages.SUCCESS if count else messages.WARNING,
        )

    @admin.action(description=_("Refund (cannot be delivered)"))
    def start_refund(self, request, queryset):
        count = order_refund_start(
            order_ids=list(queryset.values_list("id", flat=True)), reason=f"refund started by {request.user}"
        )
        self.message_user(
            request,
            ngettext("%(n)d order set to refund.", "%(n)d orders set to refund.", count) % {"n": count},
            messages.SUCCESS if count else messages.WARNING,
        )
