"""A private redis-server for tests and the chaos suite, on its own port and
data directory, so killing it never touches the shared Redis other runs use.

Without `config` it keeps nothing on disk: a restart comes back empty (a Redis
lost without persistence). With `config` (e.g. deploy/redis/redis.conf) it
runs that configuration, its port and directory overridden on the command
line, and a restart comes back with whatever that configuration made durable.

No Django and no pytest here: the callers say what a missing binary means."""

import shutil
import tempfile
from pathlib import Path

import redis

from .processes import ChildProcess, free_port


class RedisServerMissing(RuntimeError):
    pass


def redis_server_binary() -> str:
    """Raises RedisServerMissing, saying how to install it."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not shutil.which(binary):
        raise RedisServerMissing(
            "redis-server is not installed; run scripts/ensure_system_packages.sh (Debian: redis-server)"
        )
    return binary


class RedisServer(ChildProcess):
    """start() again after kill() reuses the same port and data directory."""

    def __init__(self, *, config: Path | None = None, name: str = "private-redis"):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix=f"{name}-")
        argv = [redis_server_binary()]
        if config is None:
            argv += ["--save", "", "--appendonly", "no"]
        else:
            argv += [str(self._config_copy(Path(config)))]
        # Command-line options come after the file, so they win over it.
        argv += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir]
        argv += ["--daemonize", "no", "--logfile", "", "--maxmemory-policy", "noeviction"]
        super().__init__(name, argv, log_path=Path(self.dir) / "redis.log")

    def _config_copy(self, config: Path) -> Path:
        """The file without its `dir` lines: redis-server changes into that
        directory while it reads the file, before the command line can
        override it, and a production path (/data) need not exist here."""
        kept = [line for line in config.read_text().splitlines() if line.split()[:1] != ["dir"]]
        copy = Path(self.dir) / "redis.conf"
        copy.write_text("\n".join(kept) + "\n")
        return copy

    def start(self, timeout: float = 10) -> "RedisServer":
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
        for path in Path(self.dir).iterdir():
            if path.name in ("redis.log", "redis.conf"):
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    def remove(self) -> None:
        """Stop it and delete its data directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
