"""Child processes for the test suite and the benchmark: a free local port; a
process in its own process group with its output in a log file; waits that
report the log's tail when the process dies or time runs out; stop (SIGTERM,
then SIGKILL) and kill (for chaos tests); the command lines of the shop's own
processes (gunicorn, the Celery worker and beat).

No Django here: each user builds the environment its children need
(apps/orders/tests/processes.py::test_environment, bench/stack.py::bench_environment)."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
LOG_TAIL_CHARS = 3000


def free_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def url_answers(url: str, *, timeout: float = 1.0) -> bool:
    """The URL answers 2xx (a refused connection, an error status or a timeout is False)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


def port_listens(port: int, *, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.2, message: str = "condition"):
    """Poll until `predicate()` is true. Raises AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class ProcessFailed(RuntimeError):
    """A child exited, or did not get ready in time; the message ends with its log's tail."""


class ChildProcess:
    """One child process in its own process group (so a signal reaches its
    workers too), stdout and stderr appended to `log_path` (a temporary file
    unless given). start() may be called again after stop() or kill()."""

    def __init__(
        self, name: str, argv: list[str], *, env: dict | None = None, cwd: Path = ROOT, log_path: Path | None = None
    ):
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        if log_path is None:
            descriptor, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
            os.close(descriptor)
            log_path = Path(path)
        self.log_path = log_path
        self.popen: subprocess.Popen | None = None

    def start(self) -> Self:
        with open(self.log_path, "ab") as log:  # the child has its own copy of the descriptor
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return self.log()[-chars:]

    def wait_until(self, predicate: Callable[[], bool], *, timeout: float, what: str) -> Self:
        """Poll `predicate` until true. Raises ProcessFailed, with the log's
        tail, when the process exits first or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.popen.returncode if self.popen else None
                raise ProcessFailed(f"{self.name} exited ({code}) before {what}:\n{self.log_tail()}")
            if predicate():
                return self
            time.sleep(0.2)
        raise ProcessFailed(f"{self.name}: no {what} after {timeout}s:\n{self.log_tail()}")

    def wait_for_url(self, url: str, *, timeout: float = 30) -> Self:
        return self.wait_until(lambda: url_answers(url), timeout=timeout, what=f"answer from {url}")

    def wait_for_port(self, port: int, *, timeout: float = 30) -> Self:
        return self.wait_until(lambda: port_listens(port), timeout=timeout, what=f"listener on port {port}")

    def wait_for_log(self, text: str, *, timeout: float = 30) -> Self:
        return self.wait_until(lambda: text in self.log(), timeout=timeout, what=f"{text!r} in its log")

    def stop(self, *, timeout: float = 15, signum: int = signal.SIGTERM) -> None:
        """Ask the whole group to stop (SIGTERM unless `signum`); SIGKILL it after `timeout` seconds."""
        if not self.alive():
            self._reap_group()
            return
        os.killpg(self.popen.pid, signum)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reap_group()

    def kill(self) -> None:
        """SIGKILL the process and everything in its group at once, mid-work or not."""
        if self.popen is None:
            return
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the whole group (SIGSTOP / SIGCONT to freeze and thaw it)."""
        if self.popen is not None:
            self._signal_group(signum)

    def _reap_group(self) -> None:
        # Children the leader left behind (a pool process whose master died) go too.
        if self.popen is not None:
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- the shop's processes, as production starts them (cwd ROOT: gunicorn reads ./gunicorn.conf.py)


def gunicorn_command(*, port: int, workers: int, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "cardshop.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--backlog",
        "2048",
        "--no-control-socket",
    ]


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "cardshop", *args]


def celery_worker_command(*, concurrency: int, hostname: str, beat_schedule: Path | None = None) -> list[str]:
    """A prefork worker without gossip, mingle or heartbeats (they slow its
    start, and no test or benchmark needs them); with `beat_schedule` it runs
    the beat schedule too (-B), as a small deployment would."""
    beat = ["-B", "--schedule", str(beat_schedule)] if beat_schedule else []
    return _celery(
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--hostname",
        hostname,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "INFO",
        *beat,
    )


def celery_beat_command(*, schedule: Path, loglevel: str = "WARNING") -> list[str]:
    return _celery("beat", "--loglevel", loglevel, "--schedule", str(schedule))
