"""Errors of the card key pool, each with a stable code (see apps.core.errors)."""

from django.utils.translation import gettext_lazy as _

from apps.core.errors import ShopError


class ImportRefused(ShopError):
    """The whole upload is refused (wrong file type, wrong encoding, no keys…);
    nothing of it is stored. `detail` says why in the merchant's language."""

    code = "import_refused"
    http_status = 400
    default_detail = _("The upload was refused.")
