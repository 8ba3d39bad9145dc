from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """What operators and merchants watch: the /metrics export (web and Celery
    worker), the state read at scrape time, and the admin's live sale dashboard."""

    name = "apps.monitoring"
    verbose_name = "Monitoring"

    def ready(self):
        from . import celery_hooks  # noqa: F401  (connects the Celery signals)
