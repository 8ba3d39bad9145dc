"""The merchant's key upload page, reached from a product's admin page."""

import io
import logging

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.http import Http404
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from apps.catalog.models import Product

from .exceptions import ImportRefused
from .forms import KeyUploadForm
from .services import cardkeys_import

logger = logging.getLogger(__name__)


def upload_keys_view(model_admin, request, object_id):
    if not request.user.has_perm("cardkeys.add_cardkey"):
        raise PermissionDenied
    product = Product.objects.using(DEFAULT_DB_ALIAS).filter(pk=object_id).first()
    if product is None:
        raise Http404
    report = None
    form = KeyUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        report = _import(request, form, product)
        if report is not None:
            form = KeyUploadForm()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Upload keys for %(product)s") % {"product": product},
        "opts": model_admin.model._meta,
        "original": product,
        "form": form,
        "report": report,
    }
    return TemplateResponse(request, "admin/cardkeys/upload_keys.html", context)


def _import(request, form, product):
    """The import's report, or None with the reason added to the form."""
    upload = form.cleaned_data["file"]
    if upload:
        source, file_name = upload, upload.name
    else:
        source, file_name = io.BytesIO(form.cleaned_data["keys"].encode("utf-8")), ""
    try:
        report = cardkeys_import(
            product=product,
            source=source,
            file_name=file_name,
            uploaded_by=request.user,
            column=form.cleaned_data["column"].strip() or None,
        )
    except ImportRefused as exc:
        form.add_error(None, _("Nothing was imported: %(reason)s") % {"reason": exc.detail})
        return None
    except DatabaseError:
        logger.exception("key upload for product %s failed", product.pk)
        form.add_error(None, _("The database failed during the import; nothing was imported. Try again."))
        return None
    messages.success(request, report.summary())
    return report
