"""The one private redis-server of the test suite, the benchmark and the chaos
suite: its own port and data directory, so killing it never touches the
shared Redis other runs use.

Without `config` it keeps nothing on disk: a restart comes back empty (a Redis
lost without persistence). With `config` (GATE_REDIS_CONF, the gate as
production runs it, or another file) it runs that configuration, its port and
directory overridden on the command line, and a restart comes back with
whatever that configuration made durable. `overrides` are more command-line
settings after those (("--appendfsync", "no")).

No Django and no pytest here: a missing binary raises ProcessFailed saying
how to install it."""

import shutil
import tempfile
from pathlib import Path
from typing import Self

import redis

from .processes import ROOT, ChildProcess, ProcessFailed, free_port

GATE_REDIS_CONF = ROOT / "deploy" / "redis" / "redis.conf"


def redis_server_binary() -> str:
    """Raises ProcessFailed, saying how to install it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ProcessFailed(
            "redis-server is not installed; run scripts/ensure_system_packages.sh (Debian: redis-server)"
        )
    return binary


class RedisServer(ChildProcess):
    """start() again after kill() or stop() reuses the same port and data
    directory, as a restarted server does. `data_dir` defaults to a new
    temporary directory; remove() stops the server and deletes it."""

    def __init__(
        self,
        *,
        config: Path | None = None,
        data_dir: Path | None = None,
        overrides: tuple[str, ...] = (),
        name: str = "private-redis",
    ):
        binary = redis_server_binary()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [binary]
        if config is None:
            argv += ["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
        else:
            argv += [str(self._config_copy(Path(config)))]
        # Command-line options come after the file, so they win over it.
        argv += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir)]
        argv += ["--daemonize", "no", "--logfile", "", *overrides]
        super().__init__(name, argv, log_path=self.data_dir / "redis.log")

    def _config_copy(self, config: Path) -> Path:
        """The file without its `dir` lines: redis-server changes into that
        directory while it reads the file, before the command line can
        override it, and a production path (/var/lib/redis) need not exist
        here, or may be another server's."""
        kept = [line for line in config.read_text().splitlines() if line.split()[:1] != ["dir"]]
        copy = self.data_dir / "redis.conf"
        copy.write_text("\n".join(kept) + "\n")
        return copy

    def start(self, timeout: float = 20) -> Self:
        # PING answers LOADING (an error) while a long append-only file replays.
        return super().start().wait_until(self.answers, timeout=timeout, what=f"PING on port {self.port}")

    def answers(self) -> bool:
        try:
            with redis.Redis.from_url(self.url, socket_connect_timeout=0.5) as client:
                return client.ping()
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def data_wipe(self) -> None:
        """Delete what it keeps on disk (RDB, AOF), as a failover to an empty
        replica would lose it; call it while the server is down."""
        for path in self.data_dir.iterdir():
            if path.name in ("redis.log", "redis.conf"):
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    def remove(self) -> None:
        """Stop it and delete its data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
