import pytest

from cardshop.celery import app as celery_app


@pytest.fixture
def celery_eager():
    """Run tasks in-process at .delay() (for service-level flows)."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_eager_propagates = False
