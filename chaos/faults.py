"""The faults. Each is one small class: it drives one product's sale on the
running stack, strikes at the moment it names, puts the stack back as an
operator (or the platform) would, and returns when the shop has recovered.
The runner (chaos/runner.py) then reconciles and checks the invariants.

To add a fault: subclass Fault, set `name` and `title`, write `strike`
(return the time.monotonic() it struck; the runner measures recovery from
there to the moment `strike` returns), and add it to FAULTS. A fault that
needs something of the stack that a run may leave out sets `needs` (shown in
the table instead of figures) and `available()`, which looks for it."""

import threading
import time
from pathlib import Path

from testing.redis_server import GATE_REDIS_CONF

from .sale import Sale
from .stack import ChaosStack

# The gate as production runs it: the default for --gate-config.
DURABLE_GATE_CONFIG = GATE_REDIS_CONF


class Fault:
    name = ""
    title = ""
    # What "recovered" means for this fault (docs and table footnote).
    recovered_when = "every paid order delivered"
    # What the fault needs of the stack, shown when the run lacks it.
    needs = ""
    # Whether an order answered 202 must end as a row (checked as "A"); a
    # gate lost without persistence breaks it by design (it is reported).
    keeps_every_202 = True

    def available(self, stack: ChaosStack) -> bool:
        return True

    def strike(self, stack: ChaosStack, sale: Sale, *, orders: int, timeout: float) -> float:
        raise NotImplementedError


def _paid_backlog(sale: Sale, orders: int) -> list[str]:
    """`orders` buyers checked out and persisted: the orders to pay."""
    sale.checkout(orders)
    sale.persisted_wait()
    return sale.order_nos(status="awaiting_payment")


def _drain_under_way(stack: ChaosStack, sale: Sale, orders: int, *, timeout: float) -> None:
    """Every order paid while the workers are frozen (SIGSTOP), then thawed
    to drain them; returns at the first delivery (the moment to strike)."""
    order_nos = _paid_backlog(sale, orders)
    with stack.workers_frozen():
        sale.notify_paid(order_nos)
    _delivered_at_least(sale, 1, timeout=timeout)


def _delivered_at_strike(sale: Sale, orders: int) -> None:
    delivered = sale.count(status="delivered")
    sale.notes.append(f"{delivered} of {orders} delivered when struck")


def _delivered_at_least(sale: Sale, count: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sale.count(status="delivered") < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sale.sku}: fewer than {count} deliveries after {timeout}s")
        time.sleep(0.01)


class WorkerKilledMidDrain(Fault):
    name = "worker-kill"
    title = "worker SIGKILL mid-drain"

    def strike(self, stack, sale, *, orders, timeout):
        # Every payment in before the kill: nothing published afterwards
        # wakes the new worker; what the dead one held must come back.
        _drain_under_way(stack, sale, orders, timeout=timeout)
        struck = time.monotonic()
        stack.workers_kill()  # the worker and its pool, mid-batch
        _delivered_at_strike(sale, orders)
        stack.worker_add()  # as the platform restarts a dead container
        sale.delivered_wait(timeout=timeout, watch=stack.workers)
        return struck


class WorkersRacingOneBatch(Fault):
    name = "race"
    title = "two workers racing the same batch"

    def strike(self, stack, sale, *, orders, timeout):
        from apps.orders.tasks import fulfil_order_task

        order_nos = _paid_backlog(sale, orders)
        stack.workers_stop()
        sale.notify_paid(order_nos)  # paid while no worker runs: one backlog
        # Every order asked for twice besides the payments' own requests, as a
        # broker redelivering to a second worker would.
        ids = sale.db_ids(order_nos)
        for order_id in ids * 2:
            fulfil_order_task.delay(order_id)
        struck = time.monotonic()
        first = threading.Thread(target=stack.worker_add)
        first.start()
        stack.worker_add()
        first.join()
        sale.delivered_wait(timeout=timeout, watch=stack.workers)
        return struck


class DatabaseKilledMidDrain(Fault):
    name = "db-kill-drain"
    title = "MariaDB connections killed mid-drain"
    blows, interval = 8, 0.25

    def strike(self, stack, sale, *, orders, timeout):
        _drain_under_way(stack, sale, orders, timeout=timeout)
        struck = time.monotonic()
        _delivered_at_strike(sale, orders)
        for _ in range(self.blows):
            stack.database_connections_kill()
            time.sleep(self.interval)
        sale.delivered_wait(timeout=timeout, watch=stack.workers)
        return struck


class DatabaseKilledMidWebhook(Fault):
    name = "db-kill-webhook"
    title = "MariaDB connections killed mid-webhook"
    interval = 0.1

    def strike(self, stack, sale, *, orders, timeout):
        order_nos = _paid_backlog(sale, orders)
        done = threading.Event()

        def killer():
            while not done.is_set():
                stack.database_connections_kill()
                time.sleep(self.interval)

        blows = threading.Thread(target=killer, daemon=True)
        struck = time.monotonic()
        blows.start()
        try:
            sale.notify_paid(order_nos, copies=3)  # each copy retried until answered 2xx
        finally:
            done.set()
            blows.join()
        sale.delivered_wait(timeout=timeout, watch=stack.workers)
        return struck


class GateRedisKilled(Fault):
    """The gate's redis-server SIGKILLed while buyers check out, then started
    again: on its own data (`wipe` False: what the durable config promises to
    keep) or empty (a Redis without persistence, a failover to an empty
    replica). Recovered: checkout answers 202 again and every paid order is
    delivered."""

    name = "redis-loss"
    title = "Redis loss without persistence mid-sale"
    recovered_when = "checkout answers 202 again, then every paid order delivered"
    keeps_every_202 = False
    wipe = True

    def strike(self, stack, sale, *, orders, timeout):
        crowd = sale.crowd_start()
        deadline = time.monotonic() + timeout
        while len(sale.accepted) < orders // 2:
            if time.monotonic() > deadline:
                crowd.stop()
                raise TimeoutError(f"{sale.sku}: fewer than {orders // 2} checkouts accepted")
            time.sleep(0.01)
        struck = time.monotonic()
        stack.gate.kill()
        if self.wipe:
            stack.gate.data_wipe()
        stack.gate.start()
        while (reopened := crowd.first_accepted_after(struck)) is None:
            if time.monotonic() > deadline:
                crowd.stop()
                raise TimeoutError(f"{sale.sku}: checkout did not answer 202 again in {timeout}s")
            time.sleep(0.05)
        sale.notes.append(f"checkout answered 202 again {reopened - struck:.1f} s after the kill")
        # The rest of the crowd meets the rebuilt stock until it is sold out.
        while sale.answers.get((409, "sold_out"), 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        crowd.stop()
        sale.persisted_wait()
        sale.notify_paid(sale.order_nos(status="awaiting_payment"))
        sale.delivered_wait(timeout=timeout, watch=stack.workers)
        return struck


class GateRedisCrashedDurable(GateRedisKilled):
    """The same SIGKILL, restarted on its own data under the prescribed
    durable configuration: every 202 must survive."""

    name = "redis-crash-durable"
    title = "Redis SIGKILL mid-sale (durable config)"
    needs = "a gate started from a configuration file (--gate-config deploy/redis/redis.conf)"
    keeps_every_202 = True
    wipe = False

    def available(self, stack):
        return stack.chaos.gate_redis_config is not None and Path(stack.chaos.gate_redis_config).exists()


class BrokerRestartedMidDrain(Fault):
    """RabbitMQ stopped (gracefully, as a restart or an upgrade does) and
    started again on its data while paid orders are being fulfilled, and
    while more payments come in. Needs the run's broker to be a RabbitMQ node
    of its own (`--broker private-rabbitmq`: `stack.broker`), never the
    shared one."""

    name = "rabbitmq-restart"
    title = "RabbitMQ restart mid-drain"
    needs = "a RabbitMQ node of the run's own (--broker private-rabbitmq)"

    def available(self, stack):
        return getattr(stack, "broker", None) is not None

    def strike(self, stack, sale, *, orders, timeout):
        order_nos = _paid_backlog(sale, orders)
        payer = sale.notify_paid_in_background(order_nos)
        _delivered_at_least(sale, max(1, orders // 5), timeout=timeout)
        struck = time.monotonic()
        stack.broker.kill()
        stack.broker.start()
        payer.join()
        sale.delivered_wait(timeout=timeout, watch=stack.workers)
        return struck


# The suite, in the order `make chaos` runs it.
FAULTS: list[Fault] = [
    WorkerKilledMidDrain(),
    GateRedisKilled(),
    GateRedisCrashedDurable(),
    BrokerRestartedMidDrain(),
    DatabaseKilledMidDrain(),
    DatabaseKilledMidWebhook(),
    WorkersRacingOneBatch(),
]
