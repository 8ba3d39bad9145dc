"""The shop as the chaos suite runs it: the benchmark's stack (bench/stack.py:
its own MariaDB database and Redis key prefix, gunicorn, beat, always torn
down) with a private redis-server as the gate (testing/redis_server.py), so
the gate can be SIGKILLed without touching the shared Redis, and any number
of Celery workers, each of which a fault may SIGKILL and start again.

The broker is apart from the gate, as in production: a fault on the gate
never takes the broker with it. By default it is the local RabbitMQ, in a
virtual host named like the run's key prefix (created when missing, its
queues emptied at start and end), so parallel runs never share a queue, as
the test suite does (conftest.py). `private-rabbitmq` starts a RabbitMQ node
of the run's own instead (testing/processes.py PrivateRabbitMQ), which the
`rabbitmq-restart` fault restarts; `redis` is the Redis broker, its keys
under the run's prefix."""

import shutil
import signal
import socket
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import MySQLdb
from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError as KombuOperationalError

from bench.stack import BenchStack, StackConfig
from testing.processes import ChildProcess, PrivateRabbitMQ, celery_worker_command
from testing.redis_server import RedisServer

# The --broker choices besides an amqp:// or redis:// URL.
BROKERS = ("rabbitmq", "private-rabbitmq", "redis")
LOCAL_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_BROKER = "redis://127.0.0.1:6379/1"


@dataclass(frozen=True)
class ChaosConfig:
    database: str = "cardshop_chaos"
    prefix: str = "cardshop-chaos"
    web_workers: int = 2
    web_threads: int = 8
    worker_concurrency: int = 2
    # Small batches: a drain runs many transactions, so a fault lands inside one.
    fulfil_batch_size: int = 1
    # A gate config file (e.g. deploy/redis/redis.conf); None: no persistence.
    gate_redis_config: Path | None = None
    # One of BROKERS, or a broker URL.
    broker: str = "rabbitmq"
    # Settings for the shop's processes, over the defaults below.
    extra_env: dict = field(default_factory=dict)


def chaos_environment(config: ChaosConfig, *, gate_url: str, mail_dir: Path) -> dict:
    """What the chaos stack sets on top of the benchmark's environment."""
    return {
        "DJANGO_SETTINGS_MODULE": "cardshop.settings.base",
        "REDIS_URL": gate_url,
        "GATE_REDIS_URL": gate_url,
        "FULFIL_BATCH_SIZE": str(config.fulfil_batch_size),
        # Every mail lands in a file, so duplicates and misses can be counted.
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(mail_dir),
        "LOG_LEVEL": "INFO",
        **config.extra_env,
    }


class ChaosStack(BenchStack):
    def __init__(self, config: ChaosConfig):
        self.chaos = config
        self.gate = RedisServer(config=config.gate_redis_config, name="chaos-gate-redis")
        # The run's own RabbitMQ node, when it has one: the broker a fault may restart.
        self.broker = PrivateRabbitMQ(name="chaos-rabbitmq") if config.broker == "private-rabbitmq" else None
        self.mail_dir = Path(tempfile.mkdtemp(prefix="chaos-mail-"))
        super().__init__(
            StackConfig(
                database=config.database,
                prefix=config.prefix,
                web_workers=config.web_workers,
                web_threads=config.web_threads,
                celery_concurrency=config.worker_concurrency,
                broker_url=self._broker_url(),
                extra_env=chaos_environment(config, gate_url=self.gate.url, mail_dir=self.mail_dir),
            )
        )
        self.workers: list[ChildProcess] = []

    def _broker_url(self) -> str:
        vhost = quote(self.chaos.prefix, safe="")
        if self.broker is not None:
            return self.broker.vhost_url(self.chaos.prefix)
        if self.chaos.broker == "rabbitmq":
            return LOCAL_RABBITMQ + vhost
        if self.chaos.broker == "redis":
            return REDIS_BROKER
        return self.chaos.broker

    # --- processes

    def broker_start(self) -> None:
        """The run's own RabbitMQ node, if it has one, with the run's virtual
        host; then the virtual host's queues, declared and empty."""
        if self.broker is not None:
            self.broker.start()
            self.broker.vhost_add(self.chaos.prefix)
        self.broker_prepare()

    def start(self) -> None:
        """Broker, gate Redis, gunicorn, one worker and beat; the gate is
        warmed by beat's warm-up (as after a deploy) or by the caller."""
        self.broker_start()
        self.gate.start()
        self.web_start()
        self.worker_add()
        self.beat_start()

    def worker_add(self, **env) -> ChildProcess:
        """One more Celery worker, answering a control ping before this returns."""
        from cardshop.celery import app  # after the driver's environment is set (see __main__)

        node = f"chaos-{self.port}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        argv = celery_worker_command(concurrency=self.chaos.worker_concurrency, hostname=node)
        worker = ChildProcess(
            f"celery-worker-{node.split('@')[0]}", argv, env={**self.env, **env}, log_path=self.log_dir / "workers.log"
        ).start()

        def answers() -> bool:
            # A connection of its own each time, not the app's pool: a pooled
            # one may have died with a broker a fault restarted.
            try:
                with app.connection_for_write() as connection:
                    return bool(app.control.ping(destination=[node], timeout=0.5, connection=connection))
            except (OSError, KombuOperationalError, AMQPError):
                return False

        try:
            worker.wait_until(answers, timeout=60, what="a control ping answer")
        except BaseException:
            worker.kill()  # not left running untracked, outliving the run
            raise
        self.workers.append(worker)
        return worker

    def workers_kill(self) -> None:
        """SIGKILL every worker (and its pool) at once, mid-task or not."""
        for worker in self.workers:
            worker.kill()
        self.workers = []

    @contextmanager
    def workers_frozen(self):
        """The workers stopped in their tracks (SIGSTOP) for the block, then
        resumed: a backlog builds up without restarting anything."""
        for worker in self.workers:
            worker.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for worker in self.workers:
                worker.send_signal(signal.SIGCONT)

    def workers_stop(self, *, timeout: float = 15) -> None:
        for worker in self.workers:
            worker.stop(timeout=timeout)
        self.workers = []

    def stop(self) -> None:
        self.workers_stop()
        super().stop()
        self.gate.stop()

    def teardown(self, *, keep_database: bool = False) -> None:
        self.workers_stop(timeout=3)  # what they hold is thrown away with the run
        BenchStack.stop(self)
        try:
            self.redis_clear()  # the broker's keys of this prefix (a Redis broker)
        except Exception:  # a gate a fault left down: nothing of ours to clear
            pass
        if self.broker is not None:
            try:  # its logs stay with the run's other logs
                shutil.copytree(self.broker.dir / "log", self.log_dir / "rabbitmq", dirs_exist_ok=True)
                shutil.copy(self.broker.log_path, self.log_dir / "rabbitmq")
            except OSError:
                pass
            self.broker.remove()
        else:
            try:
                self.broker_clear()  # the run's RabbitMQ queues
            except Exception:  # a broker that is gone: nothing of ours to clear
                pass
        self.gate.remove()
        shutil.rmtree(self.mail_dir, ignore_errors=True)
        if not keep_database:
            self.database_drop()

    # --- MariaDB

    def database_connections_kill(self) -> int:
        """KILL CONNECTION every connection to this run's own database, except
        the killer's own. Never any other database's: the server is shared."""
        parts = self.database_settings()
        killer = MySQLdb.connect(**parts)
        try:
            with killer.cursor() as cursor:
                cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                    [self.config.database],
                )
                ids = [row[0] for row in cursor.fetchall()]
                killed = 0
                for connection_id in ids:
                    try:
                        cursor.execute(f"KILL CONNECTION {int(connection_id)}")
                        killed += 1
                    except MySQLdb.OperationalError:
                        pass  # it ended meanwhile
                return killed
        finally:
            killer.close()

    def database_settings(self) -> dict:
        from urllib.parse import urlsplit

        url = urlsplit(self.env["DATABASE_URL"])
        return {
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 3306,
            "user": url.username or "root",
            "password": url.password or "",
            "connect_timeout": 5,
        }
