from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from modeltranslation.admin import TranslationAdmin

from apps.cardkeys.admin_upload import upload_keys_view
from apps.cardkeys.crypto import decrypt_secret, mask_secret
from apps.cardkeys.models import CardKey
from apps.core.errors import InvalidInput

from .models import Category, Product, ProductInputField, ProductPriceTier
from .services import (
    product_delivery_change_refused,
    product_delivery_changed_on_commit,
    product_image_renditions_make,
    product_image_renditions_prepare,
    product_stock_refused,
    product_stock_set,
    reusable_key_encrypt,
)

Delivery = Product.Delivery


class ProductAdminForm(forms.ModelForm):
    """The product form, plus the reusable key (written only: stored encrypted,
    shown masked) and the checks of the delivery kind and the stock number."""

    reusable_key = forms.CharField(
        label=_("reusable key"),
        required=False,
        max_length=1000,
        widget=forms.TextInput(attrs={"autocomplete": "off", "size": 60}),
        help_text=_(
            "The one key every buyer of a reusable-key product gets. Stored encrypted and shown masked; "
            "leave empty to keep the current key."
        ),
    )

    # The number the merchant saw: only a number they changed is written, so
    # saving an old page does not undo the deliveries made since it loaded.
    stock_quantity_seen = forms.IntegerField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Product
        # The admin's fieldsets name the fields; the encrypted key is never one.
        # Not Meta.fields: modeltranslation's TranslationAdmin copies those onto
        # the admin, which then has both fields and fieldsets (admin.E005).
        exclude = ("reusable_key_encrypted",)  # noqa: DJ006 -- the fieldsets, not this, decide what shows

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "stock_quantity_seen" in self.fields:
            self.fields["stock_quantity_seen"].initial = self.instance.stock_quantity

    # Reasons the save itself refused after these checks passed (a race:
    # ProductAdmin.changeform_view shows the page again with them).
    refused_at_save: dict[str, list[str]] = {}

    def stock_quantity_changed(self) -> bool:
        """Did the merchant change the number on the page they saw?"""
        if "stock_quantity" not in self.changed_data:
            return False
        seen = self.cleaned_data.get("stock_quantity_seen")
        return seen is None or seen != self.cleaned_data.get("stock_quantity")

    def clean(self):
        data = super().clean()
        kind = data.get("delivery_kind")
        product = self.instance
        entered = data.get("reusable_key", "").strip()
        if kind == Delivery.REUSABLE_KEY and not entered and not product.reusable_key_encrypted:
            self.add_error("reusable_key", _("A reusable-key product needs its key: enter the key every buyer gets."))
        changing_kind = product.pk and "delivery_kind" in self.changed_data
        if changing_kind and (reason := product_delivery_change_refused(product=product)):
            self.add_error("delivery_kind", reason)
        if product.pk and kind and kind != Delivery.KEYS and self.stock_quantity_changed():
            quantity = data.get("stock_quantity")
            if quantity is not None and (reason := product_stock_refused(product_id=product.pk, quantity=quantity)):
                self.add_error("stock_quantity", reason)
        for field, reasons in self.refused_at_save.items():
            for reason in reasons:
                self.add_error(field if field in self.fields else None, reason)
        return data


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
    image is checked by its validator and its storefront copies are made on
    save. The stock number of a reusable-key or manual product is set through
    product_stock_set, which moves the gate by the difference."""

    form = ProductAdminForm

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
        "delivery_kind",
        "keys_available",
        "keys_sold",
        "keys_void",
        "stock_number",
    )
    list_display_links = ("sku", "title")
    inlines = (ProductPriceTierInline, ProductInputFieldInline)
    list_filter = ("is_active", "sale_paused", "delivery_kind", "category")
    actions = ("pause_sale", "resume_sale")
    list_select_related = ("category",)
    search_fields = ("sku", "title_zh_hans", "title_en")
    readonly_fields = (
        "image_preview",
        "sale_state",
        "keys_available",
        "keys_sold",
        "keys_void",
        "reusable_key_masked",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("sku", "title", "category", "description", "is_active")}),
        (_("Image"), {"fields": ("image", "image_preview")}),
        (_("Price"), {"fields": ("price", "currency")}),
        (
            _("Delivery"),
            {
                "fields": (
                    "delivery_kind",
                    "stock_quantity",
                    "stock_quantity_seen",
                    "reusable_key",
                    "reusable_key_masked",
                ),
                "description": _(
                    "Keys from the pool: each buyer gets keys of their own, and the stock is the keys uploaded. "
                    "A reusable key: every buyer gets the same key. Delivered by hand: paid orders wait for you in "
                    "“Orders › awaiting manual delivery”. For these two the stock is the number you set here."
                ),
            },
        ),
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

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except InvalidInput as refused:
            # The stock number was refused by the save after the form's checks
            # passed (checkouts reserved the units meanwhile: product_stock_set
            # asks the gate itself). The whole save rolled back; the page comes
            # back as the merchant typed it, with the reason on its field.
            request.product_refused_at_save = refused.extra.get("fields") or {None: [str(refused.detail)]}
            for upload in request.FILES.values():
                upload.seek(0)  # read once by the refused save
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        refused = getattr(request, "product_refused_at_save", None)
        if refused:
            form = type(form.__name__, (form,), {"refused_at_save": refused})
        return form

    def save_model(self, request, obj, form, change):
        secret = form.cleaned_data.get("reusable_key", "").strip()
        if secret:
            obj.reusable_key_encrypted = reusable_key_encrypt(secret=secret)
        if not change:
            super().save_model(request, obj, form, change)
            if "image" in form.changed_data:
                product_image_renditions_make(product=obj)
            return
        # Pillow's work before the first write of the row: from then on the row
        # stays locked until the save commits, and reusable-key fulfilment of
        # the product waits for it.
        if "image" in form.changed_data:
            product_image_renditions_prepare(product=obj)
        self._save_changed(obj, form)

    def _save_changed(self, obj, form):
        # The stock number is not written with the rest: deliveries take from
        # it meanwhile, and the form's copy may be old. A changed number goes
        # through the service, which moves the gate by the difference.
        wanted = obj.stock_quantity
        fields = [f.name for f in Product._meta.concrete_fields if not f.primary_key and f.name != "stock_quantity"]
        obj.save(update_fields=fields)
        if obj.delivery_kind != Delivery.KEYS and form.stock_quantity_changed():
            product_stock_set(product_id=obj.pk, quantity=wanted)
        obj.refresh_from_db(fields=["stock_quantity"])
        if "delivery_kind" in form.changed_data:
            product_delivery_changed_on_commit(product_id=obj.pk)

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
        product = Product.objects.using("default").filter(pk=object_id).only("id", "delivery_kind").first()
        if product is not None and not product.sells_from_pool:
            messages.error(request, _("This product is not sold from a key pool, so it takes no key uploads."))
            return HttpResponseRedirect(reverse("admin:catalog_product_change", args=[product.pk]))
        return upload_keys_view(self, request, object_id)

    @admin.display(description=_("stock (number)"))
    def stock_number(self, product):
        return "—" if product.sells_from_pool else product.stock_quantity

    @admin.display(description=_("current reusable key"))
    def reusable_key_masked(self, product):
        if not product.reusable_key_encrypted:
            return "—"
        return mask_secret(decrypt_secret(product.reusable_key_encrypted))

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
