from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = _("Shop basics")

    def ready(self):
        from . import (
            checks,  # noqa: F401  (registers the deploy checks)
            signals,  # noqa: F401  (drops the cached shop settings on save)
        )
