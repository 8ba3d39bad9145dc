"""Child processes for the test suite, the benchmark and the chaos suite: a
free local port; a process in its own process group with its output in a log
file; waits that report the log's tail when the process dies or time runs
out; stop (SIGTERM, then SIGKILL) and kill (for chaos tests); the command
lines of the shop's own processes (gunicorn or Granian, the Celery worker and beat); a
private RabbitMQ node, and the virtual host (and its task queues) a run uses
on the shared one. The private redis-server is testing/redis_server.py.

No Django here: each user builds the environment its children need
(apps/orders/tests/processes.py::test_environment, bench/stack.py::bench_environment)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
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
        tail, when the process exits first or `timeout` seconds pass; the
        process (its whole group) is killed first, so a worker that never got
        ready cannot come up later and take another run's tasks."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.popen.returncode if self.popen else None
                self._reap_group()
                raise ProcessFailed(f"{self.name} exited ({code}) before {what}:\n{self.log_tail()}")
            if predicate():
                return self
            time.sleep(0.2)
        self.kill()
        self._reap_group()
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


def _gunicorn(*, port: int, workers: int, worker_args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "cardshop.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        *worker_args,
        "--backlog",
        "2048",
        "--no-control-socket",
    ]


def gunicorn_command(*, port: int, workers: int, threads: int) -> list[str]:
    return _gunicorn(port=port, workers=workers, worker_args=["--worker-class", "gthread", "--threads", str(threads)])


def gunicorn_sync_command(*, port: int, workers: int) -> list[str]:
    """gunicorn's sync workers (one request per process at a time), as the Docker
    image runs them by default; `workers` is the number of processes."""
    return _gunicorn(port=port, workers=workers, worker_args=["--worker-class", "sync"])


def granian_command(*, port: int, workers: int, threads: int, access_log: bool = False) -> list[str]:
    """Granian (WSGI interface) through scripts/granian_serve.py, which adds what
    gunicorn.conf.py gives gunicorn: the metrics directory emptied at start and
    dead workers' metrics files removed, and the token-free access log."""
    return [
        sys.executable,
        str(ROOT / "scripts" / "granian_serve.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--backlog",
        "2048",
        *(["--access-log"] if access_log else []),
    ]


# The web servers the harness can start (WEB_SERVER, bench --servers); the
# first is the default.
WEB_SERVERS = ("gunicorn", "gunicorn-sync", "granian")


def web_server_default() -> str:
    """WEB_SERVER from the environment (scripts/run_all.sh reads the same), else gunicorn."""
    server = os.environ.get("WEB_SERVER") or WEB_SERVERS[0]
    if server not in WEB_SERVERS:
        raise SystemExit(f"WEB_SERVER={server!r}: expected one of {', '.join(WEB_SERVERS)}.")
    return server


def web_server_command(*, server: str, port: int, workers: int, threads: int) -> list[str]:
    """The command line of one of WEB_SERVERS. For gunicorn-sync, `workers` x
    `threads` is not a process count anyone would run: it gets `workers` processes."""
    if server == "gunicorn":
        return gunicorn_command(port=port, workers=workers, threads=threads)
    if server == "gunicorn-sync":
        return gunicorn_sync_command(port=port, workers=workers)
    if server == "granian":
        return granian_command(port=port, workers=workers, threads=threads)
    raise ValueError(f"unknown web server {server!r}: expected one of {', '.join(WEB_SERVERS)}")


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "cardshop", *args]


def celery_worker_command(
    *,
    concurrency: int,
    hostname: str,
    beat_schedule: Path | None = None,
    pool: str = "prefork",
    queues: str = "",
    exclude_queues: str = "",
) -> list[str]:
    """A worker (prefork unless `pool`) without gossip, mingle or heartbeats
    (they slow its start, and no test or benchmark needs them); with
    `beat_schedule` it runs the beat schedule too (-B), as a small deployment
    would. `queues` / `exclude_queues`: Celery's -Q / -X (comma-separated)."""
    beat = ["-B", "--schedule", str(beat_schedule)] if beat_schedule else []
    chosen = (["-Q", queues] if queues else []) + (["-X", exclude_queues] if exclude_queues else [])
    return _celery(
        "worker",
        *chosen,
        "--pool",
        pool,
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


# --- a private RabbitMQ: its own node, ports and data, for tests that stop or kill the broker


class PrivateRabbitMQ(ChildProcess):
    """A throwaway `rabbitmq-server` node: its own node name, AMQP port,
    distribution port, Erlang port mapper (epmd) port, data and logs in a
    temporary directory, no plugins. The shared RabbitMQ is never touched.

    stop() (or kill()) and start() again keep the data directory, as a
    restarted server does: durable queues and their messages come back.
    remove() stops it and deletes the directory. `url` is the default virtual
    host's; vhost_url() names another one after vhost_add()."""

    BINARY = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"

    def __init__(self, *, name: str = "private-rabbitmq", start_timeout: float = 60):
        for path in (self.BINARY, self.CTL):
            if not os.access(path, os.X_OK):
                raise ProcessFailed(
                    f"{path} is missing: RabbitMQ is not installed "
                    "(scripts/ensure_system_packages.sh installs the Debian package rabbitmq-server)"
                )
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.nodename = f"{name}-{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.start_timeout = start_timeout
        (self.dir / "enabled_plugins").write_text("[].\n")
        # Its own HOME holds its own Erlang cookie, which rabbitmqctl reads from there too.
        self.node_env = {
            **os.environ,
            "HOME": str(self.dir),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # Its own epmd, started by the node in its process group and stopped with it:
            # the shared server's epmd never sees this node come and go.
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),  # absent: the defaults
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.pid"),
        }
        super().__init__(name, [self.BINARY], env=self.node_env, cwd=self.dir, log_path=self.dir / "server.log")

    def start(self) -> Self:
        return super().start().wait_until(self.answers, timeout=self.start_timeout, what=f"AMQP on port {self.port}")

    def answers(self) -> bool:
        """An AMQP login succeeds (the port alone opens before the broker is ready)."""
        import amqp  # the AMQP client kombu uses; imported here so the module stays light

        if not port_listens(self.port):
            return False
        connection = amqp.Connection(f"127.0.0.1:{self.port}", userid="guest", password="guest", connect_timeout=1)
        try:
            connection.connect()
            return True
        except Exception:  # not ready yet: refused, reset, or the broker still booting
            return False
        finally:
            try:
                connection.collect()
            except Exception:
                pass

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """rabbitmqctl against this node. Raises ProcessFailed with its output on failure."""
        result = subprocess.run(
            [self.CTL, "-n", self.nodename, *args],
            env=self.node_env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise ProcessFailed(f"rabbitmqctl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def vhost_add(self, vhost: str, *, user: str = "guest") -> str:
        """Create `vhost` with every permission for `user`; returns its amqp:// URL."""
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        return self.vhost_url(vhost)

    def vhost_url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{urllib.parse.quote(vhost, safe='')}"

    def restart(self, *, kill: bool = False) -> Self:
        """Stop (gracefully, or SIGKILL with kill=True) and start again on the same data."""
        self.kill() if kill else self.stop(timeout=30)
        return self.start()

    def remove(self) -> None:
        self.stop(timeout=30)
        # The node started its epmd as a daemon, outside the process group
        # stop() signals: without this, every private node leaves one behind.
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"], capture_output=True, timeout=10, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def rabbitmq_vhost_remove(url: str, *, ctl: str = "rabbitmqctl") -> bool:
    """Delete the virtual host an amqp:// URL names from the local RabbitMQ,
    with its queues. A run removes its own at its end: each holds some 33
    quorum queues, which keep files open, and a node left with many of them
    runs out of file handles and stops taking connections
    (docs/reliability.md). Returns False when it cannot (not local, no
    rabbitmqctl, the default virtual host): the caller empties the queues."""
    parts = urllib.parse.urlsplit(url)
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    if vhost == "/" or parts.hostname not in ("127.0.0.1", "localhost", "::1") or not shutil.which(ctl):
        return False
    result = subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, text=True, timeout=120)
    return result.returncode == 0


def rabbitmq_vhost_ensure(url: str, *, ctl: str = "rabbitmqctl") -> None:
    """Make the virtual host an amqp:// URL names exist, with every permission
    for its user, on the local RabbitMQ (rabbitmqctl needs root or the
    rabbitmq user). Does nothing when the URL already logs in. Raises
    ProcessFailed saying what is missing."""
    import amqp

    parts = urllib.parse.urlsplit(url)
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    user, password = urllib.parse.unquote(parts.username or "guest"), urllib.parse.unquote(parts.password or "guest")
    address = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}"

    def logs_in() -> bool:
        connection = amqp.Connection(address, userid=user, password=password, virtual_host=vhost, connect_timeout=2)
        try:
            connection.connect()
            return True
        except amqp.exceptions.AccessRefused:
            return False
        except amqp.exceptions.ConnectionForced:
            return False
        except amqp.exceptions.NotAllowed:  # the virtual host does not exist (or the user may not use it)
            return False
        finally:
            try:
                connection.collect()
            except Exception:
                pass

    try:
        if logs_in():
            return
    except OSError as exc:
        raise ProcessFailed(
            f"RabbitMQ is not reachable at {address} ({exc}). Start it with scripts/ensure_services.sh "
            "(Debian: rabbitmq-server -detached), or set TEST_CELERY_BROKER_URL (redis://... for the Redis broker)."
        ) from exc
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not shutil.which(ctl):
        raise ProcessFailed(
            f"RabbitMQ at {address} refuses user {user!r} on virtual host {vhost!r}, and there is no local "
            f"rabbitmqctl to create it: run `rabbitmqctl add_vhost {vhost}` and "
            f"`rabbitmqctl set_permissions -p {vhost} {user} '.*' '.*' '.*'` on the broker's machine."
        )
    for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, user, ".*", ".*", ".*"]):
        result = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)
        if result.returncode != 0 and "already exists" not in (result.stdout + result.stderr):
            raise ProcessFailed(
                f"rabbitmqctl {' '.join(args)} failed (it needs root or the rabbitmq user):\n"
                f"{result.stdout}\n{result.stderr}"
            )
    if not logs_in():
        raise ProcessFailed(f"RabbitMQ still refuses user {user!r} on virtual host {vhost!r} after creating it.")


def rabbitmq_queues_declare(url: str, queues, *, purge: bool = False) -> None:
    """Declare the task queues (kombu Queue objects) on the RabbitMQ an
    amqp:// URL names, with the delayed-delivery exchanges and queues a
    worker declares at start, so a publish before any worker ran finds them;
    with purge=True, empty them."""
    from kombu import Connection
    from kombu.transport.native_delayed_delivery import (
        bind_queue_to_native_delayed_delivery_exchange,
        declare_native_delayed_delivery_exchanges_and_queues,
    )

    with Connection(url, connect_timeout=5) as connection:
        declare_native_delayed_delivery_exchanges_and_queues(connection, "quorum")
        channel = connection.default_channel
        for queue in queues:
            queue.bind(channel).declare()
            bind_queue_to_native_delayed_delivery_exchange(connection, queue)
            if purge:
                channel.queue_purge(queue.name)
