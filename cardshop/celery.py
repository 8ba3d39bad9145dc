"""The Celery app. Workers and beat start with `celery -A cardshop worker|beat`."""

import os

from celery import Celery

# The schedule lives beside the start scripts so operators find it in one place.
from celery_worker.schedule import BEAT_SCHEDULE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cardshop.settings.local")

app = Celery("cardshop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = BEAT_SCHEDULE
app.autodiscover_tasks()
