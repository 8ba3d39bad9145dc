"""The shop as the benchmark runs it: its own MariaDB database and Redis key
prefix, its web server (gunicorn or Granian), Celery workers and beat, started as child processes and
always stopped (and their data dropped) on the way out.

The calling process is configured by `bench_environment` before Django is set
up, so its own ORM and Redis calls see the same database and prefix."""

import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from testing.processes import (
    ROOT,
    WEB_SERVERS,
    ChildProcess,
    celery_beat_command,
    celery_worker_command,
    free_port,
    web_server_command,
)

PY = sys.executable
# Threads of the payments worker (BenchStack.worker_start): each waits on one
# webhook round trip at a time.
PAYMENTS_WORKER_THREADS = 16


@dataclass(frozen=True)
class WebServer:
    """One web server as the benchmark runs it: `gunicorn` (gthread, workers ×
    threads), `gunicorn-sync` (workers processes) or `granian` (workers ×
    blocking threads). Written `name[:WORKERS[xTHREADS]]` on the command line."""

    name: str = "gunicorn"
    workers: int = 2
    threads: int = 16

    @classmethod
    def parse(cls, text: str, *, workers: int, threads: int) -> "WebServer":
        name, _, size = text.strip().partition(":")
        if name not in WEB_SERVERS:
            raise SystemExit(f"unknown web server {name!r}: expected one of {', '.join(WEB_SERVERS)}")
        if size:
            w, _, t = size.partition("x")
            workers, threads = int(w), int(t) if t else threads
        elif name == "gunicorn-sync":
            # One request per process: as many processes as gthread has threads
            # would not fit in memory; gunicorn's advice is 2 × cores + 1.
            workers = 2 * (os.cpu_count() or 1) + 1
        return cls(name=name, workers=workers, threads=threads)

    @property
    def label(self) -> str:
        return (
            f"{self.name} {self.workers}"
            if self.name == "gunicorn-sync"
            else f"{self.name} {self.workers}×{self.threads}"
        )


@dataclass(frozen=True)
class StackConfig:
    database: str = "cardshop_bench"
    prefix: str = "cardshop-bench"
    web_workers: int = 2
    web_threads: int = 16
    # gunicorn (gthread), gunicorn-sync or granian (testing.processes.WEB_SERVERS).
    web_server: str = "gunicorn"
    celery_concurrency: int = 2
    # The per-product checkout bucket (default 1000/s in the app) is raised so
    # the benchmark measures the checkout path, not the cap.
    checkout_rate: int = 1_000_000
    # The Celery broker; empty: BENCH_CELERY_BROKER_URL, else the Redis broker.
    broker_url: str = ""
    extra_env: dict = field(default_factory=dict)

    @classmethod
    def from_args(cls, args, **more) -> "StackConfig":
        """From the options the benchmark commands share (--database,
        --prefix, --web-server, --web-workers, --web-threads,
        --celery-concurrency)."""
        return cls(
            database=args.database,
            prefix=args.prefix,
            web_workers=args.web_workers,
            web_threads=args.web_threads,
            web_server=args.web_server,
            celery_concurrency=args.celery_concurrency,
            **more,
        )


def bench_environment(config: StackConfig, *, site_url: str) -> dict:
    """Environment variables shared by the driver and every child process."""
    base_url = os.environ.get("DATABASE_URL", "mysql://root:@127.0.0.1:3306/cardshop")
    parts = urlsplit(base_url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"The benchmark only runs against a local MariaDB, not {parts.hostname}.")
    database_url = urlunsplit(parts._replace(path="/" + config.database))
    return {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": database_url,
        "DATABASE_REPLICA_URL": database_url,
        "REDIS_KEY_PREFIX": config.prefix,
        "SITE_URL": site_url,
        "DJANGO_DEBUG": "false",
        # One address sends the whole crowd: per-client limits would refuse it.
        "RATELIMIT_ENABLE": "false",
        # Nor may the per-address cap on unpaid reservations.
        "UNPAID_CAP_PER_IP": "0",
        "CHECKOUT_RATE_PER_SECOND": str(config.checkout_rate),
        "CHECKOUT_RATE_BURST": str(config.checkout_rate),
        # The drain phase queues thousands of fulfilments on purpose: the
        # overload pause must not refuse the flash sale that follows it.
        "PERSIST_BACKLOG_LIMIT": "1000000",
        "FULFIL_BACKLOG_LIMIT": "1000000",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "CELERY_VISIBILITY_TIMEOUT": "30",
        # The figures in docs/benchmarks.md were measured on the Redis broker, whose
        # keys carry the run's prefix and are cleared with it (redis_clear); a run
        # on RabbitMQ sets BENCH_CELERY_BROKER_URL=amqp://... with a virtual host of
        # its own (broker_prepare creates it on the local RabbitMQ).
        "CELERY_BROKER_URL": config.broker_url or os.environ.get("BENCH_CELERY_BROKER_URL", "redis://127.0.0.1:6379/1"),
        "LOG_LEVEL": "WARNING",
        **config.extra_env,
    }


class BenchStack:
    """Database, web server, Celery worker and beat for one benchmark run."""

    def __init__(self, config: StackConfig):
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **bench_environment(config, site_url=self.url)}
        self.log_dir = Path(tempfile.mkdtemp(prefix="cardshop-bench-"))
        self.web: ChildProcess | None = None
        self.worker: ChildProcess | None = None
        self.payments_worker: ChildProcess | None = None
        self.beat: ChildProcess | None = None
        self._control = None  # _control_app()

    # --- database

    def manage(self, *args: str) -> None:
        subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=self.env, check=True, stdout=subprocess.DEVNULL)

    def database_recreate(self) -> None:
        self.database_drop()
        self.manage("create_database")
        self.manage("migrate", "--noinput", "-v", "0")

    def database_drop(self) -> None:
        import MySQLdb

        parts = urlsplit(self.env["DATABASE_URL"])
        server = MySQLdb.connect(
            host=parts.hostname, port=parts.port or 3306, user=parts.username or "root", password=parts.password or ""
        )
        try:
            with server.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{self.config.database}`")
        finally:
            server.close()

    # --- broker

    def broker_prepare(self) -> None:
        """On RabbitMQ: the run's virtual host (created on the local broker
        when missing), its task queues declared and emptied of what a run
        that died before its teardown left (tasks about a dropped database).
        Nothing to do on the Redis broker: its keys carry the run's prefix.
        Call it once Django is set up (the queues are the settings')."""
        from django.conf import settings

        from cardshop.broker import broker_is_redis
        from testing.processes import rabbitmq_queues_declare, rabbitmq_vhost_ensure

        url = self.env["CELERY_BROKER_URL"]
        if broker_is_redis(url):
            return
        rabbitmq_vhost_ensure(url)
        rabbitmq_queues_declare(url, settings.CELERY_TASK_QUEUES, purge=True)

    def broker_clear(self) -> None:
        """Remove the run's RabbitMQ virtual host, or empty its task queues
        where it cannot be removed (the Redis broker's are cleared with the
        prefix, redis_clear)."""
        from django.conf import settings  # the driver's environment names the run's settings

        from cardshop.broker import broker_is_redis
        from testing.processes import rabbitmq_queues_declare, rabbitmq_vhost_remove

        url = self.env["CELERY_BROKER_URL"]
        if not broker_is_redis(url) and not rabbitmq_vhost_remove(url):
            rabbitmq_queues_declare(url, settings.CELERY_TASK_QUEUES, purge=True)

    def redis_clear(self) -> int:
        """Delete every key of this run's prefix, in the cache/gate and the broker database."""
        import redis

        deleted = 0
        from cardshop.broker import broker_is_redis

        urls = {self.env.get("REDIS_URL", "redis://127.0.0.1:6379/0")}
        if self.env.get("GATE_REDIS_URL") and self.env.get("GATE_REDIS_CLUSTER", "false").lower() != "true":
            urls.add(self.env["GATE_REDIS_URL"])
        if broker_is_redis(self.env["CELERY_BROKER_URL"]):
            urls.add(self.env["CELERY_BROKER_URL"])
        for url in urls:
            client = redis.Redis.from_url(url)
            batch = list(client.scan_iter(match=self.config.prefix + ":*", count=2000))
            for start in range(0, len(batch), 1000):
                deleted += client.delete(*batch[start : start + 1000])
            client.close()
        return deleted

    # --- processes

    def _child(self, name: str, argv: list[str], env: dict | None = None) -> ChildProcess:
        return ChildProcess(name, argv, env=env or self.env, log_path=self.log_dir / f"{name}.log").start()

    def web_start(self, server: WebServer | None = None, *, cpus: str = "", **env) -> None:
        """The configured web server, or `server` (the server comparison);
        with `cpus` (a taskset list, "1" or "0-1"), it and every worker it
        forks run on those CPUs only (the scaling slope). taskset execs the
        server, so the pid is the server's own. `env` overrides the run's
        environment (another gate Redis)."""
        c = self.config
        server = server or WebServer(name=c.web_server, workers=c.web_workers, threads=c.web_threads)
        argv = web_server_command(server=server.name, port=self.port, workers=server.workers, threads=server.threads)
        if cpus:
            argv = ["taskset", "-c", cpus, *argv]
        self.web = self._child(server.name, argv, {**self.env, **env})
        self.web.wait_for_url(f"{self.url}/healthz", timeout=60)

    def web_restart(self, server: WebServer | None = None, *, cpus: str = "", **env) -> None:
        if self.web is not None:
            self.web.stop()
        self.web_start(server, cpus=cpus, **env)

    def worker_start(self, **env) -> None:
        """Start the shop's worker on every queue but the payments queue, and
        the payments worker (below) once; wait until each answers a control
        ping (their log format belongs to the app's logging settings, so it
        is not read).

        The payments queue gets a worker of its own, threads rather than
        processes: its tasks wait on payment providers' HTTP, and here they
        are mostly the sandbox provider's webhook calls, which stand in for a
        real provider's servers. On the shop's two worker processes, a crowd's
        payments would queue persistence and fulfilment behind a few seconds
        of webhook round trips to the busy web server: the provider's work
        measured as the shop's."""
        # Imported here, not at the top: the driver puts bench_environment into
        # os.environ after importing this module, and the Celery app reads it.
        from django.conf import settings

        app = self._control_app()

        def ping(node: str):
            return lambda: bool(app.control.ping(destination=[node], timeout=0.5))

        node = f"bench-{self.port}@{socket.gethostname()}"
        argv = celery_worker_command(
            concurrency=self.config.celery_concurrency,
            hostname=node,
            exclude_queues=settings.CELERY_QUEUE_PAYMENTS,
        )
        self.worker = self._child("celery-worker", argv, {**self.env, **env})
        if self.payments_worker is None or not self.payments_worker.alive():
            payments_node = f"bench-payments-{self.port}@{socket.gethostname()}"
            argv = celery_worker_command(
                concurrency=PAYMENTS_WORKER_THREADS,
                hostname=payments_node,
                pool="threads",
                queues=settings.CELERY_QUEUE_PAYMENTS,
            )
            # Started beside the shop's worker, not after it: both boot at once.
            self.payments_worker = self._child("celery-payments-worker", argv, self.env)
            self.payments_worker.wait_until(ping(payments_node), timeout=60, what="a control ping answer")
        self.worker.wait_until(ping(node), timeout=60, what="a control ping answer")

    def _control_app(self):
        """A Celery app on this stack's broker and key prefix, to ping its
        workers. Not the driver's own app: that one's broker settings are the
        driver's environment, which names only one stack, and the volume phase
        runs a second stack beside it (bench/volume_paired.py), whose workers
        listen on their own prefix (the Redis broker) or virtual host."""
        if self._control is None:
            from celery import Celery

            from cardshop.broker import broker_transport_options

            url = self.env["CELERY_BROKER_URL"]
            self._control = Celery("bench-control", broker=url, set_as_current=False)
            self._control.conf.broker_transport_options = broker_transport_options(
                url=url,
                key_prefix=self.env["REDIS_KEY_PREFIX"],
                visibility_timeout=int(self.env["CELERY_VISIBILITY_TIMEOUT"]),
            )
        return self._control

    def worker_restart(self, **env) -> None:
        self.worker.stop()
        self.worker.log_path.unlink(missing_ok=True)
        self.worker_start(**env)

    def beat_start(self) -> None:
        self.beat = self._child("celery-beat", celery_beat_command(schedule=self.log_dir / "beat-schedule"))

    def server_pids(self) -> list[int]:
        """The web server's master and workers (the web side's CPU)."""
        import psutil

        if not self.web or not self.web.alive():
            return []
        master = psutil.Process(self.web.pid)
        return [master.pid, *(child.pid for child in master.children(recursive=True))]

    def worker_pids(self) -> list[int]:
        import psutil

        pids = []
        for process in (self.worker, self.payments_worker, self.beat):
            if process and process.alive():
                parent = psutil.Process(process.pid)
                pids += [parent.pid, *(child.pid for child in parent.children(recursive=True))]
        return pids

    def stop(self) -> None:
        for process in (self.beat, self.worker, self.payments_worker, self.web):
            if process is not None:
                process.stop()

    def teardown(self, *, keep_database: bool = False) -> None:
        self.stop()
        if self._control is not None:
            self._control.close()
        self.redis_clear()
        self.broker_clear()
        if not keep_database:
            self.database_drop()
