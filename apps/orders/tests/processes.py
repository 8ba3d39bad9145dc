"""Real server processes for tests, on the suite's database, Redis prefix and
broker: Celery workers (which a test may SIGKILL and start again), gunicorn and Granian.
They are testing.processes.ChildProcess with this suite's environment."""

import os
import uuid

from django.conf import settings
from django.db import connection

from testing.processes import (
    ChildProcess,
    celery_worker_command,
    free_port,
    granian_command,
    gunicorn_command,
    gunicorn_sync_command,
)


def test_environment(**extra) -> dict:
    """The environment a child process needs to share this test's database and Redis."""
    db = connection.settings_dict
    url = f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{db['NAME']}"
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "cardshop.settings.test",
            "DATABASE_URL": url,
            "DATABASE_REPLICA_URL": url,
            "TEST_REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
            "TEST_CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            # A task whose worker died comes back quickly in tests.
            "CELERY_VISIBILITY_TIMEOUT": "3",
            # The crowds these processes serve all come from 127.0.0.1, like a
            # benchmark's; per-client limits are tested in apps/core/tests.
            "RATELIMIT_ENABLE": "false",
            # Nor the per-address unpaid cap (tested in apps/orders/tests/test_hoarding.py).
            "UNPAID_CAP_PER_IP": "0",
        }
    )
    if settings.GATE_REDIS_URL != settings.REDIS_URL or settings.GATE_REDIS_CLUSTER:
        # A test that moved the gate (tests/test_gate_cluster.py) moves its children's too.
        env["GATE_REDIS_URL"] = settings.GATE_REDIS_URL
        env["GATE_REDIS_CLUSTER"] = "true" if settings.GATE_REDIS_CLUSTER else "false"
    env.update(extra)
    return env


class CeleryWorker(ChildProcess):
    """A worker process; with beat=True it runs the beat schedule too (-B), as
    a small deployment would (persistence every second, expiry, warm-up)."""

    def __init__(self, *, concurrency: int = 2, extra_env: dict | None = None, beat: bool = False):
        super().__init__("celery-worker", [])
        self.concurrency = concurrency
        self.extra_env = extra_env or {}
        self.beat = beat

    def start(self, timeout: float = 30) -> "CeleryWorker":
        # The environment is read at each start: a test may change os.environ between two.
        self.env = test_environment(**self.extra_env)
        self.argv = celery_worker_command(
            concurrency=self.concurrency,
            hostname=f"test-{uuid.uuid4().hex[:8]}@%h",
            beat_schedule=self.log_path.with_name(self.log_path.name + ".beat") if self.beat else None,
        )
        return super().start().wait_for_log(" ready.", timeout=timeout)


class GunicornServer(ChildProcess):
    """The app under gunicorn, as production runs it, on a free local port.
    `extra_env` overrides the test environment (e.g. REDIS_URL for a private Redis);
    `sync`: sync workers (the image's and `make run`'s) instead of gthread;
    `args` are more of gunicorn's options (--timeout, --graceful-timeout ...)."""

    def __init__(
        self,
        *,
        workers: int = 2,
        threads: int = 8,
        sync: bool = False,
        args: tuple = (),
        extra_env: dict | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        command = (
            gunicorn_sync_command(port=self.port, workers=workers)
            if sync
            else gunicorn_command(port=self.port, workers=workers, threads=threads)
        )
        super().__init__("gunicorn", [*command, *args])

    def start(self, timeout: float = 30) -> "GunicornServer":
        self.env = test_environment(**self.extra_env)
        return super().start().wait_for_url(f"{self.url}/healthz", timeout=timeout)


class GranianServer(ChildProcess):
    """The app under Granian (scripts/granian_serve.py), on a free local port.
    `args` are more of the launcher's options (--access-log, --graceful-timeout ...)."""

    def __init__(self, *, workers: int = 2, threads: int = 8, args: tuple = (), extra_env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        super().__init__("granian", [*granian_command(port=self.port, workers=workers, threads=threads), *args])

    def start(self, timeout: float = 30) -> "GranianServer":
        self.env = test_environment(**self.extra_env)
        return super().start().wait_for_url(f"{self.url}/healthz", timeout=timeout)
