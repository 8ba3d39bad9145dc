"""Celery signals: the worker's metrics endpoint, task counters, and the
request id carried from the request that queued a task into its logs."""

import logging.config

from celery import signals
from django.conf import settings

from apps.core import metrics
from apps.core.logging import request_id_get, request_id_reset, request_id_set

from .exporter import worker_exporter_start

REQUEST_ID_HEADER = "cardshop_request_id"
# task id -> the token restoring the request id that was current before the task.
_previous_ids: dict[str, object] = {}


@signals.worker_ready.connect
def _serve_worker_metrics(sender=None, **kwargs):
    # In the worker's main process, after the pool started: the thread is not
    # forked into the pool processes, which only write their metric files.
    if settings.WORKER_METRICS_PORT:
        worker_exporter_start(address=settings.WORKER_METRICS_ADDRESS, port=settings.WORKER_METRICS_PORT)


@signals.task_postrun.connect
def _count_task(sender=None, task_id=None, state=None, **kwargs):
    if sender is not None and state:
        metrics.celery_task_finished(task=sender.name, state=state.lower())
    # Lines logged after the task (or, run eagerly, by the request) get their own id back.
    if (token := _previous_ids.pop(task_id, None)) is not None:
        try:
            request_id_reset(token)
        except ValueError:  # set in another context (a pool's thread); nothing to restore there
            pass


@signals.before_task_publish.connect
def _carry_request_id(headers=None, **kwargs):
    request_id = request_id_get()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@signals.task_prerun.connect
def _adopt_request_id(task_id=None, task=None, **kwargs):
    # The request that queued the task, else the task's own id.
    carried = getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None
    _previous_ids[task_id] = request_id_set(carried or task_id)


@signals.setup_logging.connect
def _django_logging(**kwargs):
    # Workers and beat log as the web does (LOGGING: JSON lines with request id
    # and order number) instead of Celery's own format, at WORKER_LOG_LEVEL:
    # Celery's --loglevel is not applied once this receiver configures logging.
    logging.config.dictConfig(settings.LOGGING)
    logging.getLogger().setLevel(settings.WORKER_LOG_LEVEL.upper())
