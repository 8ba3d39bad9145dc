import pytest

from .processes import CeleryWorker, GunicornServer


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


@pytest.fixture
def published(monkeypatch):
    """Fulfilment tasks published (not run), and no mails."""
    sent = []
    monkeypatch.setattr("apps.orders.tasks.fulfil_order_task.delay", lambda order_id=None: sent.append(order_id))
    monkeypatch.setattr("apps.orders.tasks.send_order_keys_emails_task.delay", lambda order_ids: None)
    return sent
