from django.contrib import admin
from django.db.models import Count, Q
from django.urls import path
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from modeltranslation.admin import TranslationAdmin

from apps.cardkeys.admin_upload import upload_keys_view
from apps.cardkeys.models import CardKey

from .models import Category, Product, ProductInputField, ProductPriceTier
from .services import product_image_renditions_make


@admin.register(Category)
class CategoryAdmin(TranslationAdmin):
    """The name per language (modeltranslation: one field per language)."""

    list_display = ("name", "slug", "sort_order")
    search_fields = ("name_zh_hans", "name_en", "slug")
    prepopulated_fields = {"slug": ("name_en",)}


class ProductPriceTierInline(admin.TabularInline):
    """Wholesale prices: "from 10 pieces, 4.50 each"."""

    model = ProductPriceTier
    extra = 0
    verbose_name = _("wholesale price")
    verbose_name_plural = _("wholesale prices (from a quantity on, each piece costs)")


class ProductInputFieldInline(admin.StackedInline):
    """What the buyer types at checkout (a game account id, a region)."""

    model = ProductInputField
    extra = 0
    fields = (
        ("key", "kind", "required", "sort_order"),
        ("label_zh", "label_en"),
        ("pattern", "max_length"),
        "choices",
    )


@admin.register(Product)
class ProductAdmin(TranslationAdmin):
    """Products are edited with the normal form (saving drops the cached copy,
    see signals.py); keys are added on the product's "Upload keys" page. The
    title and description have a field per language (modeltranslation); the
    image is checked by its validator and its storefront copies are made on save."""

    list_display = (
        "sku",
        "title",
        "category",
        "price",
        "currency",
        "is_active",
        "sale_paused",
        "sale_state",
        "sale_starts_at",
        "sale_ends_at",
        "keys_available",
        "keys_sold",
        "keys_void",
    )
    list_display_links = ("sku", "title")
    inlines = (ProductPriceTierInline, ProductInputFieldInline)
    list_filter = ("is_active", "sale_paused", "category")
    actions = ("pause_sale", "resume_sale")
    list_select_related = ("category",)
    search_fields = ("sku", "title_zh_hans", "title_en")
    readonly_fields = (
        "image_preview",
        "sale_state",
        "keys_available",
        "keys_sold",
        "keys_void",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("sku", "title", "category", "description", "is_active")}),
        (_("Image"), {"fields": ("image", "image_preview")}),
        (_("Price"), {"fields": ("price", "currency")}),
        (
            _("Sale rules"),
            {"fields": ("sale_paused", "sale_starts_at", "sale_ends_at", "per_buyer_limit", "max_per_order")},
        ),
        (
            _("Against scalpers"),
            {
                "fields": (
                    "min_page_seconds",
                    "max_unpaid_per_buyer",
                    "limit_by_account",
                    "limit_by_device",
                    "limit_by_ip",
                ),
                "description": _(
                    "The per-buyer limit always counts the buyer's email; each identity turned on here is "
                    "counted too. A minimum time on the page of 0 turns that check off."
                ),
            },
        ),
        (
            _("Sales"),
            {"fields": ("sale_state", "keys_available", "keys_sold", "keys_void", "created_at", "updated_at")},
        ),
    )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "image" in form.changed_data:
            product_image_renditions_make(product=obj)

    @admin.display(description=_("card image"))
    def image_preview(self, product):
        if not product.image_card:
            return _("No image: the storefront shows a letter tile.")
        return format_html(
            '<img src="{}" alt="" style="max-width: 240px; max-height: 240px; border-radius: 8px">',
            product.image_card.url,
        )

    @admin.action(description=_("Pause the sale (kill switch)"))
    def pause_sale(self, request, queryset):
        self._set_paused(request, queryset, paused=True)

    @admin.action(description=_("Resume the sale"))
    def resume_sale(self, request, queryset):
        self._set_paused(request, queryset, paused=False)

    def _set_paused(self, request, queryset, *, paused: bool):
        # Saved one by one so the signals publish the switch to the checkout script at once.
        for product in queryset:
            product.sale_paused = paused
            product.save(update_fields=["sale_paused", "updated_at"])
        self.message_user(request, _("Updated %(n)d products.") % {"n": queryset.count()})

    def get_queryset(self, request):
        # The three key counts in the same query as the products: no query per row.
        status = "card_keys__status"
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_available=Count("card_keys", filter=Q(**{status: CardKey.Status.AVAILABLE})),
                n_sold=Count("card_keys", filter=Q(**{status: CardKey.Status.SOLD})),
                n_void=Count("card_keys", filter=Q(**{status: CardKey.Status.VOID})),
            )
        )

    def get_urls(self):
        upload = path(
            "<path:object_id>/upload-keys/",
            # CSRF-exempt here only so that the view can swap the upload handlers
            # before the body is read; it runs the CSRF check itself.
            self.admin_site.admin_view(csrf_exempt(self.upload_keys)),
            name=f"{self.opts.app_label}_{self.opts.model_name}_upload_keys",
        )
        return [upload, *super().get_urls()]

    def upload_keys(self, request, object_id):
        return upload_keys_view(self, request, object_id)

    @admin.display(description=_("sale"))
    def sale_state(self, product):
        labels = {"not_started": _("not started"), "open": _("open"), "ended": _("ended")}
        return labels[product.sale_state()]

    @admin.display(description=_("available keys"), ordering="n_available")
    def keys_available(self, product):
        return getattr(product, "n_available", "—")

    @admin.display(description=_("sold keys"), ordering="n_sold")
    def keys_sold(self, product):
        return getattr(product, "n_sold", "—")

    @admin.display(description=_("void keys"), ordering="n_void")
    def keys_void(self, product):
        return getattr(product, "n_void", "—")
