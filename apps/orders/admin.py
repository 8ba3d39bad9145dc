from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from redis.exceptions import RedisError

from apps.cardkeys.models import CardKey
from apps.core.admin import ReadOnlyWithActionsAdmin

from .input_fields import order_input_values
from .models import Order
from .services.fulfilment import order_fulfilment_retry
from .services.payment import REFUNDABLE_BY_OPERATOR, order_refund_start

# Internal hashes: the access token's and the buyer identities the gate counts by.
HIDDEN_FIELDS = ("access_token_hash", "buyer_identities", "input_values")


@admin.register(Order)
class OrderAdmin(ReadOnlyWithActionsAdmin):
    """Orders change state through the purchase path only; the admin shows them
    and offers the operator's decisions: retry a delivery, refund an order.
    The access token's hash and the hashed buyer identities (the gate's
    bookkeeping, meaningless to a person) are never shown."""

    list_display = (
        "order_no",
        "product",
        "buyer_email",
        "quantity",
        "amount",
        "currency",
        "status",
        "overpaid",
        "created_at",
        "paid_at",
        "delivered_at",
    )
    list_filter = ("status", "overpaid", "product")
    search_fields = ("order_no", "buyer_email")
    list_select_related = ("product",)
    # Every field but the hashes, the sealed buyer input and the row id (the
    # order number names an order).
    readonly_fields = [
        *(f.name for f in Order._meta.fields if f.name not in HIDDEN_FIELDS and not f.primary_key),
        "keys_handed_out",
        "buyer_input",
    ]
    exclude = HIDDEN_FIELDS
    actions = ("retry_fulfilment", "start_refund")

    @admin.action(description=_("Retry delivery (after uploading more keys)"), permissions=["change"])
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

    @admin.display(description=_("keys"))
    def keys_handed_out(self, order):
        """Masked, with their status: a refunded order's keys show revoked."""
        keys = CardKey.objects.filter(order=order).order_by("id")
        return ", ".join(f"{key.masked_secret} ({key.get_status_display()})" for key in keys) or "-"

    @admin.display(description=_("buyer input"))
    def buyer_input(self, order):
        """What the buyer typed in the product's checkout fields, decrypted for the merchant."""
        values = order_input_values(order)
        if not values:
            return "-"
        return format_html_join(mark_safe("<br>"), "{}: <strong>{}</strong>", values)

    @admin.action(description=_("Refund through the payment provider"), permissions=["change"])
    def start_refund(self, request, queryset):
        """An intermediate page lists the orders and amounts first; the refund
        starts only once the operator confirms there."""
        if request.POST.get("confirm") != "yes":
            refundable = [order for order in queryset if order.status in REFUNDABLE_BY_OPERATOR]
            return TemplateResponse(
                request,
                "admin/orders/order/refund_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": _("Refund these orders?"),
                    "opts": self.model._meta,
                    "queryset": queryset,
                    "refundable": refundable,
                    "skipped": [order for order in queryset if order.status not in REFUNDABLE_BY_OPERATOR],
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        count = order_refund_start(
            order_ids=list(queryset.values_list("id", flat=True)), reason=f"refund started by {request.user}"
        )
        self.message_user(
            request,
            ngettext("%(n)d order set to refund.", "%(n)d orders set to refund.", count) % {"n": count},
            messages.SUCCESS if count else messages.WARNING,
        )
