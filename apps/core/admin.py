from django.contrib import admin
from django.shortcuts import redirect
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from modeltranslation.admin import TranslationAdmin

from .models import ShopSettings
from .services import shop_logo_rendition_make


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services: the admin shows them, nothing more."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ShopSettings)
class ShopSettingsAdmin(TranslationAdmin):
    """The one settings row: the list page opens it (or the form to create it
    while none is saved); it cannot be deleted. Texts have a field per language."""

    fieldsets = (
        (None, {"fields": ("name", "logo", "logo_preview")}),
        (_("Announcement banner"), {"fields": ("banner", "banner_starts_at", "banner_ends_at")}),
        (_("Footer"), {"fields": ("footer", "contact")}),
    )
    readonly_fields = ("logo_preview",)

    def has_add_permission(self, request):
        return not ShopSettings.objects.filter(pk=ShopSettings.SINGLETON_PK).exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if ShopSettings.objects.filter(pk=ShopSettings.SINGLETON_PK).exists():
            return redirect("admin:core_shopsettings_change", ShopSettings.SINGLETON_PK)
        return redirect("admin:core_shopsettings_add")

    def save_model(self, request, obj, form, change):
        obj.pk = ShopSettings.SINGLETON_PK
        super().save_model(request, obj, form, change)
        if "logo" in form.changed_data:
            shop_logo_rendition_make(row=obj)

    def response_post_save_add(self, request, obj):
        return redirect("admin:index")

    def response_post_save_change(self, request, obj):
        return redirect("admin:index")

    @admin.display(description=_("logo as shown"))
    def logo_preview(self, row):
        if not row.logo_small:
            return _("No logo: the storefront shows the default one.")
        return format_html('<img src="{}" alt="" style="height: 32px">', row.logo_small.url)


class ReadOnlyWithActionsAdmin(ReadOnlyAdmin):
    """Read-only rows on which the list offers actions (each calling a service):
    the list keeps the change permission the actions need, while every row's
    own page is view-only, without Save or Delete buttons."""

    def has_change_permission(self, request, obj=None):
        return obj is None and super(ReadOnlyAdmin, self).has_change_permission(request)
