from django.apps import AppConfig


class StockConfig(AppConfig):
    name = "apps.stock"
    label = "stock"

    def ready(self):
        from . import signals  # noqa: F401
