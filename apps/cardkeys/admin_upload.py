"""The merchant's key upload page, reached from a product's admin page.

The upload never rests on disk in plaintext: Django's own handlers (memory,
then a temp file past FILE_UPLOAD_MAX_MEMORY_SIZE) are replaced here by one
that encrypts the file into its import job's staging rows as it arrives.
That is why the view is CSRF-exempt at the URL and runs the CSRF check
itself: the check reads the body, and the handlers must be set before. The
request answers as soon as the upload is staged; a worker imports it, and
the job's page shows the progress.
"""

import logging

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS
from django.http import Http404, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_protect

from apps.catalog.models import Product

from .exceptions import ImportRefused
from .forms import KeyUploadForm
from .import_jobs import (
    cardkeys_import_job_create,
    cardkeys_import_job_stage_text,
    cardkeys_import_job_start,
    cardkeys_import_jobs_discard,
)
from .staging import EncryptingUploadHandler
from .upload_reader import TEXT, upload_format

logger = logging.getLogger(__name__)

# Room for the multipart framing and the form's small fields beside the file.
_FORM_OVERHEAD_BYTES = 64 * 1024


def upload_keys_view(model_admin, request, object_id):
    if not request.user.has_perm("cardkeys.add_cardkey"):
        raise PermissionDenied
    product = Product.objects.using(DEFAULT_DB_ALIAS).filter(pk=object_id).first()
    if product is None:
        raise Http404
    if request.method != "POST":
        return _page(model_admin, request, product, KeyUploadForm())
    # Refused from its announced size, before a byte of the body is read.
    if _content_length(request) > settings.CARDKEY_IMPORT_MAX_BYTES + _FORM_OVERHEAD_BYTES:
        return _page(model_admin, request, product, KeyUploadForm(), error=_too_large_message(), status=413)
    handler = EncryptingUploadHandler(
        request=request,
        new_job=lambda file_name: (
            cardkeys_import_job_create(
                product_id=product.pk,
                uploaded_by=request.user,
                source_name=file_name,
                language=translation.get_language() or "",
            ).pk
        ),
    )
    request.upload_handlers = [handler]
    started: list[int] = []
    try:
        return csrf_protect(_receive)(
            request, model_admin=model_admin, product=product, handler=handler, started=started
        )
    finally:
        # Files under other field names, and everything of a refused request
        # (the CSRF check too reads the body, so a forged one is staged first).
        cardkeys_import_jobs_discard(job_ids=[pk for pk in handler.job_ids if pk not in started])


def _receive(request, *, model_admin, product, handler, started: list[int]):
    """Runs once the CSRF check passed; appends the job it queues to `started`."""
    files = request.FILES  # parses the upload, unless the CSRF check did
    if handler.too_large:
        return _page(model_admin, request, product, KeyUploadForm(), error=_too_large_message(), status=413)
    form = KeyUploadForm(request.POST, files)
    if not form.is_valid():
        return _page(model_admin, request, product, form)
    job_id = _start(request, form, product)
    if job_id is None:
        return _page(model_admin, request, product, form)
    started.append(job_id)
    messages.info(request, _("The upload was received; its keys are being imported."))
    return HttpResponseRedirect(reverse("admin:cardkeys_keyimportjob_change", args=[job_id]))


def _start(request, form, product) -> int | None:
    """Queues the import job of a valid form; None with the reason added to the form."""
    upload = form.cleaned_data["file"]
    column = form.cleaned_data["column"].strip()
    try:
        if upload:
            # Refused at once rather than by the worker: the merchant is still here.
            if upload_format(upload.name) == TEXT and column:
                raise ImportRefused(_("A column name only applies to .csv files."))
            job_id, size = upload.job_id, upload.size
        else:
            job_id = cardkeys_import_job_create(
                product_id=product.pk,
                uploaded_by=request.user,
                source_name="",
                language=translation.get_language() or "",
            ).pk
            size = cardkeys_import_job_stage_text(job_id=job_id, text=form.cleaned_data["keys"])
    except ImportRefused as exc:
        form.add_error(None, _("Nothing was imported: %(reason)s") % {"reason": exc.detail})
        return None
    cardkeys_import_job_start(job_id=job_id, column=column, size_bytes=size)
    return job_id


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _too_large_message() -> str:
    return _("The file is larger than %(size)s, so it was not read. Split it into smaller files.") % {
        "size": filesizeformat(settings.CARDKEY_IMPORT_MAX_BYTES)
    }


def _page(model_admin, request, product, form, *, error: str = "", status=200):
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Upload keys for %(product)s") % {"product": product},
        "opts": model_admin.model._meta,
        "original": product,
        "form": form,
        "error": error,
        "max_bytes": settings.CARDKEY_IMPORT_MAX_BYTES,
        "too_large_message": _too_large_message(),
    }
    return TemplateResponse(request, "admin/cardkeys/upload_keys.html", context, status=status)
