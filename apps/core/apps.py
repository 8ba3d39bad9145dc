from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self):
        from . import (
            checks,  # noqa: F401  (registers the deploy checks)
            signals,  # noqa: F401  (drops the cached shop settings on save)
        )
