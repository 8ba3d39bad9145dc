from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MonitoringConfig(AppConfig):
    """What operators and merchants watch: the /metrics export (web and Celery
    worker), the state read at scrape time, and the admin's live sale dashboard."""

    name = "apps.monitoring"
    verbose_name = _("Monitoring")

    def ready(self):
        from . import celery_hooks  # noqa: F401  (connects the Celery signals)
