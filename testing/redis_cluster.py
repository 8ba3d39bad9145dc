"""A private Redis Cluster for the tests: three masters (no replicas), each
a redis-server from the gate's durable configuration (deploy/redis/redis.conf)
plus deploy/redis/cluster.conf, on free ports and in temporary directories,
joined with `redis-cli --cluster create`. Bounded in time; remove() stops the
servers and deletes their directories.

No Django and no pytest here: a missing binary raises ProcessFailed saying
how to install it."""

import shutil
import subprocess
import time
from pathlib import Path
from typing import Self

import redis
from redis.cluster import RedisCluster

from .processes import ROOT, ProcessFailed, free_port
from .redis_server import GATE_REDIS_CONF, RedisServer

GATE_CLUSTER_CONF = ROOT / "deploy" / "redis" / "cluster.conf"
REDIS_CLUSTER_SLOTS = 16384


def cluster_options(path: Path = GATE_CLUSTER_CONF) -> tuple[str, ...]:
    """deploy/redis/cluster.conf as command-line options ("--name", "value"...)."""
    options: list[str] = []
    for line in path.read_text().splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            options += [f"--{words[0]}", *words[1:]]
    return tuple(options)


def redis_cli_binary() -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise ProcessFailed("redis-cli is not installed; run scripts/ensure_system_packages.sh (Debian: redis-tools)")
    return binary


class RedisClusterServers:
    """Three masters, each a RedisServer (kill() and start() one of them as
    a crash and restart on its own data: its nodes.conf brings it back into
    the cluster with the same id and slots)."""

    def __init__(self, *, masters: int = 3, name: str = "gate-cluster", overrides: tuple[str, ...] = ()):
        self.nodes: list[RedisServer] = []
        for n in range(masters):
            # The cluster bus port is set too: port + 10000 (the default) may be past 65535.
            bus = ("--cluster-port", str(free_port()))
            self.nodes.append(
                RedisServer(
                    config=GATE_REDIS_CONF,
                    overrides=(*cluster_options(), *bus, *overrides),
                    name=f"{name}-{n}",
                )
            )
        self.url = self.nodes[0].url

    def start(self, timeout: float = 60) -> Self:
        """Start the servers, create the cluster, wait for cluster_state:ok on every node."""
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.start(timeout=max(deadline - time.monotonic(), 1))
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            result = subprocess.run(
                [redis_cli_binary(), "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=max(deadline - time.monotonic(), 1),
            )
            if result.returncode != 0:
                raise ProcessFailed(f"redis-cli --cluster create failed:\n{result.stdout}\n{result.stderr}")
            self.wait_ok(timeout=max(deadline - time.monotonic(), 1))
        except BaseException:
            self.remove()
            raise
        return self

    def wait_ok(self, *, timeout: float = 30) -> None:
        """Until every running node says cluster_state:ok and knows all slots."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._node_ok(node) for node in self.nodes):
                return
            time.sleep(0.2)
        states = {node.port: self._node_state(node) for node in self.nodes}
        raise ProcessFailed(f"Redis Cluster not ok after {timeout}s: {states}")

    @staticmethod
    def _node_state(node: RedisServer) -> str:
        try:
            with redis.Redis.from_url(node.url, socket_connect_timeout=0.5, socket_timeout=1) as client:
                info = client.cluster("info")
        except redis.RedisError as exc:
            return repr(exc)
        return f"{info.get('cluster_state')} slots_ok={info.get('cluster_slots_ok')}"

    def _node_ok(self, node: RedisServer) -> bool:
        return self._node_state(node) == f"ok slots_ok={REDIS_CLUSTER_SLOTS}"

    def client(self) -> RedisCluster:
        """A fresh cluster client (the caller closes it)."""
        return RedisCluster.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def node_of_slot(self, slot: int) -> RedisServer:
        """The master serving `slot`, as the cluster says now."""
        with redis.Redis.from_url(self.nodes[0].url, socket_timeout=2) as client:
            for start, end, master, *_replicas in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"no master serves slot {slot}")

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()


def main() -> None:
    """`python -m testing.redis_cluster`: a private cluster for a developer,
    until Ctrl-C (or SIGTERM); its directories go with it."""
    import signal
    import sys

    servers = RedisClusterServers(name="dev-gate-cluster").start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"GATE_REDIS_URL={servers.url} GATE_REDIS_CLUSTER=true  (Ctrl-C stops it)", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        servers.remove()


if __name__ == "__main__":
    main()
