from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StockConfig(AppConfig):
    name = "apps.stock"
    label = "stock"
    verbose_name = _("Stock gate")

    def ready(self):
        from . import signals  # noqa: F401
