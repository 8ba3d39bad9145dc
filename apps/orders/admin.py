from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.core.validators import MaxLengthValidator
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from redis.exceptions import RedisError

from apps.cardkeys.crypto import decrypt_secret, mask_secret
from apps.cardkeys.models import CardKey
from apps.catalog.models import Product
from apps.core.admin import ReadOnlyWithActionsAdmin
from apps.core.errors import ShopError

from .input_fields import order_input_values
from .models import Order
from .selectors import manual_delivery_overdue_cutoff, orders_awaiting_manual_delivery
from .services.fulfilment import order_fulfilment_retry
from .services.manual_delivery import order_deliver_manually
from .services.payment import REFUNDABLE_BY_OPERATOR, order_refund_start

# Internal hashes (the access token's, the buyer identities the gate counts
# by) and sealed values: shown as their plaintext (masked, or the merchant's
# own text) by the methods below, never as tokens.
HIDDEN_FIELDS = (
    "access_token_hash",
    "buyer_identities",
    "input_values",
    "reusable_key_encrypted",
    "manual_content_encrypted",
    # Who delivered by hand shows with the delivery itself (manual_delivery_shown).
    "manually_delivered_by",
)
MANUAL_FIELD = "manual_delivery_content"


class ManualDeliveryFilter(admin.SimpleListFilter):
    """The merchant's queue: paid orders of manual-delivery products, and
    those past MANUAL_DELIVERY_SLA_HOURS."""

    title = _("manual delivery")
    parameter_name = "manual"

    def lookups(self, request, model_admin):
        return (("awaiting", _("awaiting manual delivery")), ("overdue", _("overdue manual delivery")))

    def queryset(self, request, queryset):
        if self.value() == "awaiting":
            return queryset.filter(id__in=orders_awaiting_manual_delivery().values("id"))
        if self.value() == "overdue":
            waiting = orders_awaiting_manual_delivery().filter(paid_at__lt=manual_delivery_overdue_cutoff())
            return queryset.filter(id__in=waiting.values("id"))
        return queryset


class ManualDeliveryForm(forms.ModelForm):
    """The order page of a paid manual-delivery order: what the merchant delivered."""

    manual_delivery_content = forms.CharField(
        label=_("What was delivered"),
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        help_text=_(
            "The buyer sees this text on the order page and in the delivery mail, instead of keys "
            "(e.g. “Topped up 100 credits to account 12345”). Saving delivers the order; it cannot be undone."
        ),
    )

    class Meta:
        model = Order
        fields = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields[MANUAL_FIELD]
        field.validators.append(MaxLengthValidator(settings.MANUAL_DELIVERY_MAX_CHARS))
        field.widget.attrs["maxlength"] = settings.MANUAL_DELIVERY_MAX_CHARS


def _awaiting_manual_delivery(order: Order | None) -> bool:
    return (
        order is not None
        and order.status == Order.Status.PAID
        and order.product.delivery_kind == Product.Delivery.MANUAL
    )


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
    list_filter = ("status", ManualDeliveryFilter, "overpaid", "product")
    search_fields = ("order_no", "buyer_email")
    list_select_related = ("product",)
    # Every field but the hidden ones and the row id (the order number names an order).
    readonly_fields = [
        *(f.name for f in Order._meta.fields if f.name not in HIDDEN_FIELDS and not f.primary_key),
        "keys_handed_out",
        "buyer_input",
        "manual_delivery_shown",
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
        if order.reusable_key_encrypted:
            return _("%(key)s (the product's reusable key)") % {
                "key": mask_secret(decrypt_secret(order.reusable_key_encrypted))
            }
        keys = CardKey.objects.filter(order=order).order_by("id")
        return ", ".join(f"{key.masked_secret} ({key.get_status_display()})" for key in keys) or "-"

    @admin.display(description=_("buyer input"))
    def buyer_input(self, order):
        """What the buyer typed in the product's checkout fields, decrypted for the merchant."""
        values = order_input_values(order)
        if not values:
            return "-"
        return format_html_join(mark_safe("<br>"), "{}: <strong>{}</strong>", values)

    @admin.display(description=_("delivered by hand"))
    def manual_delivery_shown(self, order):
        """The merchant's own text, whole: it is what the buyer was told."""
        if not order.manual_content_encrypted:
            return "-"
        who = order.manually_delivered_by or "?"
        return format_html(
            "<pre style='white-space:pre-wrap;margin:0'>{}</pre><p>{}</p>",
            decrypt_secret(order.manual_content_encrypted),
            _("by %(user)s at %(time)s")
            % {"user": who, "time": date_format(timezone.localtime(order.delivered_at), "SHORT_DATETIME_FORMAT")},
        )

    # --- The manual delivery form, on the order's own page: the one page of
    # an order that can be saved (every other one is view-only).

    def has_change_permission(self, request, obj=None):
        if obj is not None and _awaiting_manual_delivery(obj):
            return admin.ModelAdmin.has_change_permission(self, request, obj)
        return super().has_change_permission(request, obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if _awaiting_manual_delivery(obj):
            kwargs["form"] = ManualDeliveryForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not _awaiting_manual_delivery(obj):
            return fieldsets
        rest = [
            (name, {**opts, "fields": [f for f in opts["fields"] if f != MANUAL_FIELD]}) for name, opts in fieldsets
        ]
        deliver = (
            _("Deliver by hand"),
            {
                "fields": [MANUAL_FIELD],
                "description": _(
                    "This product is delivered by hand: deliver it to the buyer, then write here what you delivered "
                    "and save. The order becomes delivered and the buyer gets the mail."
                ),
            },
        )
        return [deliver, *rest]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Without ModelAdmin's enclosing transaction: saving an order is only
        # ever order_deliver_manually, a durable service with its own
        # transaction (and its mail after that commit). Nothing else is written.
        return self._changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        """Orders change only through their services: the one thing this page
        saves is a manual delivery."""
        if MANUAL_FIELD not in form.cleaned_data:
            return
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        try:
            result = order_deliver_manually(
                order_id=obj.pk, content=form.cleaned_data[MANUAL_FIELD], by_user=request.user
            )
        except ShopError as exc:
            request._manual_delivery_message = (messages.ERROR, str(exc.detail))
            return
        if result.delivered_now:
            message = _("Order %(order_no)s delivered; the buyer's mail is on its way.")
            level = messages.SUCCESS
        else:
            message = _("Order %(order_no)s was delivered already; nothing changed.")
            level = messages.WARNING
        request._manual_delivery_message = (level, message % {"order_no": obj.order_no})

    def response_change(self, request, obj):
        outcome = getattr(request, "_manual_delivery_message", None)
        if outcome is None:
            return super().response_change(request, obj)
        self.message_user(request, outcome[1], outcome[0])
        return HttpResponseRedirect(request.path)

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
