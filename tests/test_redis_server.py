"""testing/redis_server.py: the private redis-server tests and the chaos
suite kill. Without a configuration a restart comes back empty; with one it
comes back with what that configuration made durable."""

import signal
import sys
import time

from testing.processes import ChildProcess
from testing.redis_server import RedisServer


def test_without_a_configuration_a_killed_redis_comes_back_empty():
    server = RedisServer().start()
    try:
        server.client().set("k", "v")
        server.kill()
        assert not server.answers()
        server.start()
        assert server.client().get("k") is None
    finally:
        server.remove()


def test_with_a_configuration_a_killed_redis_comes_back_with_what_it_made_durable(tmp_path):
    config = tmp_path / "redis.conf"
    # Its own port and directory are given on the command line, whatever the file says.
    config.write_text('port 1\ndir /nonexistent\nappendonly yes\nappendfsync always\nsave ""\n')
    server = RedisServer(config=config).start()
    try:
        server.client().set("k", "v")
        server.kill()
        server.start()
        assert server.client().get("k") == b"v"
        server.kill()
        server.data_wipe()  # a failover to an empty replica
        server.start()
        assert server.client().get("k") is None
    finally:
        server.remove()


def test_a_frozen_child_does_no_work_until_thawed(tmp_path):
    ticks = tmp_path / "ticks"
    code = f"import time\nwhile True:\n    open({str(ticks)!r}, 'a').write('.')\n    time.sleep(0.02)"
    child = ChildProcess("ticker", [sys.executable, "-c", code]).start()
    try:
        child.wait_until(ticks.exists, timeout=20, what="a first tick")
        child.send_signal(signal.SIGSTOP)
        time.sleep(0.2)  # a tick being written when the signal landed
        frozen = ticks.read_text()
        time.sleep(0.5)
        assert ticks.read_text() == frozen
        child.send_signal(signal.SIGCONT)
        child.wait_until(lambda: ticks.read_text() != frozen, timeout=20, what="a tick after the thaw")
    finally:
        child.stop()
