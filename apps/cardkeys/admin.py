from django.contrib import admin, messages
from django.http import Http404
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from apps.core.admin import ReadOnlyAdmin, ReadOnlyWithActionsAdmin

from . import services
from .crypto import fingerprint_secret
from .models import CardKey, KeyBatch, KeyImportJob
from .progress import format_duration
from .selectors import import_job_progress


@admin.register(KeyBatch)
class KeyBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "product",
        "source_name",
        "uploaded_by",
        "created_at",
        "accepted_count",
        "duplicate_count",
        "invalid_count",
    )
    list_filter = ("product",)
    list_select_related = ("product", "uploaded_by")


@admin.register(KeyImportJob)
class KeyImportJobAdmin(ReadOnlyAdmin):
    """Admin uploads imported in the background: the list, and each job's
    page with its progress bar while it runs and its report once it ends."""

    list_display = (
        "id",
        "product",
        "source_name",
        "uploaded_by",
        "status",
        "lines_read",
        "stored_count",
        "duplicate_count",
        "refused_count",
        "created_at",
    )
    list_filter = ("status", "product")
    list_select_related = ("product", "uploaded_by")

    def has_view_permission(self, request, obj=None):
        # Whoever may upload keys follows their import.
        return request.user.has_perm("cardkeys.add_cardkey") or super().has_view_permission(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        if job is None or not self.has_view_permission(request, job):
            raise Http404
        progress = import_job_progress(job)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Key import #%(id)s") % {"id": job.pk},
            "opts": self.opts,
            "job": job,
            "progress": progress,
            "elapsed": format_duration(progress.elapsed),
            "eta": format_duration(progress.eta_seconds),
            "rate": int(progress.lines_per_second),
        }
        return TemplateResponse(request, "admin/cardkeys/import_job.html", context)


@admin.register(CardKey)
class CardKeyAdmin(ReadOnlyWithActionsAdmin):
    """Secrets appear masked only, on every page; a key is found by typing it
    in full (matched through its fingerprint, never decrypting the pool).
    Keys arrive through the import only, and leave sale by being voided,
    keeping their history: no add, no delete."""

    list_display = ("id", "product", "masked_secret", "status", "batch", "order", "sold_at", "created_at")
    list_filter = ("status", "product")
    list_select_related = ("product", "order")
    list_per_page = 100
    search_fields = ("fingerprint",)
    search_help_text = _("Type a whole key to find it.")
    fields = ("product", "batch", "masked_secret", "status", "order", "sold_at", "created_at")
    readonly_fields = fields
    actions = ("void_keys", "unvoid_keys")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(fingerprint=fingerprint_secret(term)), False

    @admin.display(description=_("key"))
    def masked_secret(self, key):
        return key.masked_secret

    @admin.action(description=_("Void selected keys (withdraw from sale)"), permissions=["change"])
    def void_keys(self, request, queryset):
        count = services.cardkeys_void(key_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(
            request,
            ngettext(
                "%(n)d key voided; sold keys are never changed.",
                "%(n)d keys voided; sold keys are never changed.",
                count,
            )
            % {"n": count},
            messages.SUCCESS if count else messages.WARNING,
        )

    @admin.action(description=_("Make selected keys available again"), permissions=["change"])
    def unvoid_keys(self, request, queryset):
        count = services.cardkeys_unvoid(key_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(
            request,
            ngettext("%(n)d key is available again.", "%(n)d keys are available again.", count) % {"n": count},
            messages.SUCCESS if count else messages.WARNING,
        )
