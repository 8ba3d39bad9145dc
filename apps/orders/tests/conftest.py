import pytest

from cardshop.celery import app as celery_app

from .processes import CeleryWorker, GunicornServer


@pytest.fixture
def celery_eager():
    """Run tasks in-process at .delay() (for service-level flows)."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_eager_propagates = False


@pytest.fixture
def celery_worker_process():
    """A real Celery worker process on the test database; stopped afterwards."""
    worker = CeleryWorker().start()
    yield worker
    worker.stop()


@pytest.fixture
def app_server():
    """The app under real gunicorn on the test database."""
    server = GunicornServer().start()
    yield server
    server.stop()
