"""Real server processes for tests, on the suite's database, Redis prefix and
broker: Celery workers (which a test may SIGKILL and start again) and gunicorn."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[3]


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
        }
    )
    env.update(extra)
    return env


class CeleryWorker:
    """A worker process; with beat=True it runs the beat schedule too (-B), as
    a small deployment would (persistence every second, expiry, warm-up)."""

    def __init__(self, *, concurrency: int = 2, extra_env: dict | None = None, beat: bool = False):
        self.concurrency = concurrency
        self.extra_env = extra_env or {}
        self.beat = beat
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="celery-worker-", suffix=".log")[1])

    def env(self) -> dict:
        return test_environment(**self.extra_env)

    def start(self, timeout: float = 30) -> "CeleryWorker":
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open; closed here after the start
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cardshop",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(self.concurrency),
                "--hostname",
                f"test-{uuid.uuid4().hex[:8]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
                *(["-B", "--schedule", str(self.log_path) + ".beat"] if self.beat else []),
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Celery worker exited at start:\n{self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"Celery worker not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, mid-task or not."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until(predicate, *, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    """The app under gunicorn, as production runs it, on a free local port.
    `extra_env` overrides the test environment (e.g. REDIS_URL for a private Redis)."""

    def __init__(self, *, workers: int = 2, threads: int = 8, extra_env: dict | None = None):
        self.workers, self.threads = workers, threads
        self.extra_env = extra_env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="gunicorn-", suffix=".log")[1])

    def start(self, timeout: float = 30) -> "GunicornServer":
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open; closed here after the start
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "cardshop.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(self.threads),
                "--backlog",
                "2048",
            ],
            cwd=ROOT,
            env=test_environment(**self.extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn not answering after {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
