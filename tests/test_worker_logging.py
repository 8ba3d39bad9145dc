"""Celery workers and beat log at WORKER_LOG_LEVEL (else LOG_LEVEL): Celery's
own --loglevel is not applied once our setup_logging receiver configures logging,
and `make run` relies on this level to keep an idle shop quiet."""

import logging

import pytest
from django.test import override_settings

from apps.monitoring.celery_hooks import _django_logging


@pytest.fixture
def root_logger_restored():
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    yield root
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.mark.parametrize(("configured", "expected"), [("WARNING", logging.WARNING), ("info", logging.INFO)])
def test_worker_and_beat_log_at_worker_log_level(root_logger_restored, configured, expected):
    with override_settings(WORKER_LOG_LEVEL=configured, LOG_LEVEL="DEBUG"):
        _django_logging(loglevel=logging.DEBUG)
    assert root_logger_restored.level == expected
