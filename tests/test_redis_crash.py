"""A 202 is a promise (issue 12): the gate Redis, run from
deploy/redis/redis.conf, is SIGKILLed in the middle of a sale and restarted
on the same data directory. Every order number the crowd was answered 202 for
ends as an order row in MariaDB, and nothing is oversold.

The persister (a Celery worker) is frozen (SIGSTOP) for a moment before the
kill, so reservations are sure to be waiting in Redis, not yet in MariaDB,
when Redis dies: only the append-only file can bring them back. Started with
`--appendonly no` instead, this test fails (checked by hand: dozens of
answered orders never become rows).

The shared Redis is never touched: the gate is a private redis-server on its
own port and data directory; the broker stays the suite's, as in production,
where the broker is not the gate."""

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis

from apps.orders.models import Order
from apps.orders.tests.processes import CeleryWorker, GunicornServer
from apps.orders.tests.support import product_with_keys
from testing.processes import wait_until
from testing.redis_server import GATE_REDIS_CONF, RedisServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

KEYS = 600
CROWD = 12
# The order rows any answered order may end as (the crowd pays none, but the
# states a paid or expired one would reach count the same).
RECORDED = {Order.Status.AWAITING_PAYMENT, Order.Status.PAID, Order.Status.DELIVERED, Order.Status.EXPIRED}


class Crowd:
    """Buyers checking out in threads, each with its own address; remembers
    every order number answered 202 and counts the other answers."""

    def __init__(self, *, base: str, sku: str):
        self.base, self.sku = base, sku
        self.accepted: list[str] = []
        self.refused: dict[int, int] = {}
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._buyer, args=(n,), daemon=True) for n in range(CROWD)]

    def _buyer(self, n: int) -> None:
        attempt = 0
        while not self.stopping.is_set():
            attempt += 1
            body = json.dumps({"sku": self.sku, "email": f"crowd{n}-{attempt}@x.com", "quantity": 1}).encode()
            request = urllib.request.Request(
                f"{self.base}/api/v1/orders", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, text = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, text = error.code, error.read()
            except OSError:
                status, text = 0, b""
            with self.lock:
                if status == 202:
                    self.accepted.append(json.loads(text)["order_no"])
                else:
                    self.refused[status] = self.refused.get(status, 0) + 1
                    if status != 409:
                        time.sleep(0.02)  # a paused sale: do not spin

    def start(self) -> "Crowd":
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


@pytest.fixture
def gate_redis(settings):
    """The private gate Redis, and this process pointed at it (settings and
    the Lua scripts' client), as gunicorn and the worker will be."""
    server = RedisServer(config=GATE_REDIS_CONF, name="gate-redis").start()
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": server.url}}
    settings.GATE_REDIS_URL = server.url
    yield server
    server.remove()


def test_every_order_answered_202_survives_a_gate_redis_sigkill(gate_redis, settings):
    product = product_with_keys(keys=KEYS, per_buyer_limit=1)  # warmed on the gate Redis
    env = {
        "REDIS_URL": gate_redis.url,
        "GATE_REDIS_URL": gate_redis.url,
        "TEST_CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    worker = CeleryWorker(concurrency=2, beat=True, extra_env=env).start()
    server = GunicornServer(workers=2, threads=8, extra_env=env).start()
    crowd = Crowd(base=server.url, sku=product.sku)
    try:
        crowd.start()
        wait_until(lambda: crowd.count() >= 60, timeout=20, message="the first orders")
        # The persister freezes: what is answered from now on waits in Redis only.
        os.killpg(worker.pid, signal.SIGSTOP)
        before_freeze = crowd.count()
        wait_until(lambda: crowd.count() >= before_freeze + 60, timeout=20, message="orders while frozen")
        gate_redis.kill()
        answered_before_kill = crowd.count()
        os.killpg(worker.pid, signal.SIGCONT)
        time.sleep(0.5)  # the crowd meets a dead gate: 503, nothing answered 202
        gate_redis.start()
        # Back on its data; beat sees the new run id, rebuilds the gate from
        # MariaDB plus the queue the file kept, and checkout reopens.
        wait_until(
            lambda: crowd.count() >= answered_before_kill + 30, timeout=30, message="checkout reopened after restart"
        )
    finally:
        crowd.stop()
        server.stop()
    try:
        accepted = set(crowd.accepted)
        assert len(accepted) == len(crowd.accepted), "an order number was answered twice"

        def recorded() -> set[str]:
            return set(Order.objects.filter(order_no__in=accepted).values_list("order_no", flat=True))

        try:
            wait_until(lambda: recorded() == accepted, timeout=20, message="every answered order in MariaDB")
        except AssertionError:
            missing = sorted(accepted - recorded())
            raise AssertionError(
                f"{len(missing)} of {len(accepted)} orders answered 202 never reached MariaDB "
                f"(answers other than 202: {crowd.refused}); e.g. {missing[:5]}\n{worker.log_tail()}"
            ) from None
    finally:
        worker.stop()

    orders = Order.objects.filter(product=product)
    assert set(orders.values_list("status", flat=True)) <= RECORDED
    # Nothing oversold: the orders holding keys never exceed the keys uploaded,
    # and the gate counts exactly what is left.
    assert orders.count() <= KEYS
    client = redis.Redis.from_url(gate_redis.url)
    stock = int(client.get(f"{settings.REDIS_KEY_PREFIX}:{{p:{product.id}}}:stock"))
    assert stock == KEYS - orders.count(), (stock, orders.count())
    assert answered_before_kill > before_freeze
