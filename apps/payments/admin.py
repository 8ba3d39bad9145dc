from django import forms
from django.conf import settings
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from apps.core.admin import ReadOnlyAdmin

from .labels import payment_method_label as default_method_label
from .models import PaymentEvent, PaymentMethodChoice
from .providers import provider_get, provider_names
from .selectors import payment_method_choices_forget


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    """Read-only: events are written by the webhook alone, in the order's
    transaction; editing one would break the one-payment-one-effect record."""

    list_display = ("received_at", "provider", "kind", "event_id", "order", "amount", "currency")
    list_filter = ("provider", "kind")
    search_fields = ("event_id", "order__order_no")
    list_select_related = ("order",)


@admin.register(PaymentMethodChoice)
class PaymentMethodChoiceAdmin(admin.ModelAdmin):
    """Which payment methods buyers see, under which label, in which order."""

    list_display = ("method", "label", "position", "enabled", "offered_now")
    list_editable = ("label", "position", "enabled")
    ordering = ("position", "method")

    @admin.display(description=_("offered now"), boolean=True)
    def offered_now(self, choice: PaymentMethodChoice) -> bool:
        """Its provider is enabled (PAYMENT_PROVIDERS) and offers it; the
        order's currency decides the rest at checkout."""
        return any(choice.method in provider_get(name=name).methods() for name in _enabled_providers())

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "method":
            methods = [m for name in _enabled_providers() for m in provider_get(name=name).methods()]
            kwargs["widget"] = forms.Select(choices=[(m, f"{m} ({default_method_label(m)})") for m in methods])
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        payment_method_choices_forget()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        payment_method_choices_forget()


def _enabled_providers() -> list[str]:
    return [name for name in settings.PAYMENT_PROVIDERS if name in provider_names()]
