"""deploy/redis/redis.conf, the gate Redis's configuration (issue 12), as the
installed redis-server reads it: what a 202 rests on is really switched on,
and the command-line overrides the suite, the benchmark and compose use win
over the file."""

import redis

from testing.redis_server import GATE_REDIS_CONF, RedisServer


def test_the_file_asks_for_an_fsynced_aof_no_snapshots_and_no_eviction(tmp_path):
    server = RedisServer(config=GATE_REDIS_CONF, data_dir=tmp_path / "gate").start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        config = {name: client.config_get(name)[name] for name in ("appendonly", "appendfsync", "save")}
        assert config == {"appendonly": "yes", "appendfsync": "always", "save": ""}
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("no-appendfsync-on-rewrite")["no-appendfsync-on-rewrite"] == "no"
        # The command line's port and directory win over the file's.
        assert client.config_get("dir")["dir"] == str(tmp_path / "gate")
        assert client.info("persistence")["aof_enabled"] == 1

        client.set("answered", "202")
        server.kill()  # SIGKILL: no shutdown, no final fsync
        server.start()
        assert redis.Redis.from_url(server.url).get("answered") == b"202"
        assert (tmp_path / "gate" / "appendonlydir").is_dir()
    finally:
        server.stop()


def test_the_file_keeps_a_host_server_on_loopback_and_protected():
    lines = {
        line.split()[0]: line.split(None, 1)[1]
        for line in GATE_REDIS_CONF.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert lines["bind"] == "127.0.0.1 -::1"
    assert lines["protected-mode"] == "yes"
