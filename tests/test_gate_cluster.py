"""The stock gate on a real Redis Cluster (issue 14): three masters started
for the test (testing/redis_cluster.py, the gate's durable configuration plus
deploy/redis/cluster.conf), GATE_REDIS_CLUSTER=true in this process and in
the gunicorn and Celery processes, products chosen so their hash tags land
on all three masters.

- every Lua script runs on the cluster, each call with keys of one slot;
- the 2,000-buyers flash sale over three products, one per master: exactly
  the keys uploaded are sold (P1), no key twice (P2);
- one master loses its data mid-sale: its products fail closed (503
  sale_paused) while the others sell on, warm-up rebuilds them from MariaDB,
  and nothing is oversold;
- one master crashes and restarts on its append-only file: the per-master
  run-id markers notice it (and only once), and every gate is rebuilt;
  mid-sale, every order answered 202 survives it.

The shared Redis is never touched: the cluster has its own ports and
directories, and is removed afterwards."""

import json
import os
import signal
import threading
import time
from collections import Counter

import pytest
from django.db import connection
from redis.commands.core import Script
from redis.crc import key_slot

from apps.cardkeys.models import CardKey
from apps.coupons.tests.factories import CouponFactory
from apps.orders import mail as order_mail
from apps.orders.exceptions import SalePaused
from apps.orders.models import Order
from apps.orders.services import persistence
from apps.orders.services.cancel import order_cancel
from apps.orders.services.checkout import order_checkout
from apps.orders.tasks import persist_reservations_task
from apps.orders.tests.processes import CeleryWorker, GunicornServer
from apps.orders.tests.support import pay, product_with_keys
from apps.orders.tests.test_flash_sale import assert_each_key_in_one_order, checkout_crowd, pay_all_concurrently
from apps.stock import services as gate
from apps.stock.redis import gate_clients_forget, gate_error_before_sending, stock_redis
from apps.stock.redis_keys import persist_requested_key, stock_key
from apps.stock.reservations import Reservation
from apps.stock.selectors import stock_remaining_many
from apps.stock.warmup import gates_check_redis_restart, stock_warm
from testing.processes import wait_until
from testing.redis_cluster import RedisClusterServers

from .test_gate_slots import LUA_FILES
from .test_redis_crash import Crowd

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cluster_servers():
    servers = RedisClusterServers().start()
    yield servers
    servers.remove()


def _flush(servers: RedisClusterServers) -> None:
    for node in servers.nodes:
        if node.alive():
            with node.client() as client:
                client.flushall()


@pytest.fixture
def gate_cluster(cluster_servers, settings):
    """This process's gate on the cluster (its children follow it:
    apps/orders/tests/processes.py::test_environment), empty to start with."""
    cluster_servers.wait_ok()
    _flush(cluster_servers)
    # Every master listed, as docs/gate-cluster.md prescribes.
    settings.GATE_REDIS_URL = ",".join(node.url for node in cluster_servers.nodes)
    settings.GATE_REDIS_CLUSTER = True
    yield cluster_servers
    _flush(cluster_servers)


def product_ids_on_every_master(*, per_master: int = 1, start: int = 7000) -> list[int]:
    """Product ids whose hash tags land `per_master` on each master, in
    master order; asserts the cover."""
    client = stock_redis()
    masters = sorted(node.name for node in client.get_primaries())
    chosen: dict[str, list[int]] = {name: [] for name in masters}
    for product_id in range(start, start + 1000):
        owner = client.get_node_from_key(stock_key(product_id)).name
        if len(chosen[owner]) < per_master:
            chosen[owner].append(product_id)
        if all(len(ids) == per_master for ids in chosen.values()):
            break
    assert all(len(ids) == per_master for ids in chosen.values()), chosen
    ids = [product_id for name in masters for product_id in chosen[name]]
    assert len({client.get_node_from_key(stock_key(pid)).name for pid in ids}) == 3
    return ids


def master_of(product) -> str:
    return stock_redis().get_node_from_key(stock_key(product.id)).name


# --- every script, each call in one slot


class ScriptCalls:
    """Every gate script call of this process: its name and its keys. Scripts
    of the cache Redis (the order poll's status records) are not the gate's
    and are left out."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, list[str]]] = []
        names = {path.read_text(): path.stem for path in LUA_FILES}
        original = Script.__call__

        def recording(script, keys=(), args=(), client=None):
            if script.script in names:
                self.calls.append((names[script.script], [str(k) for k in keys]))
            return original(script, keys=keys, args=args, client=client)

        monkeypatch.setattr(Script, "__call__", recording)

    def names(self) -> set[str]:
        return {name for name, _keys in self.calls}


def test_every_script_runs_on_the_cluster_with_keys_of_one_slot(gate_cluster, monkeypatch, celery_eager):
    """Each script called through the services that call it in production.
    On a cluster a call with keys of two slots is refused (CROSSSLOT) and a
    key outside the call's slot fails inside the script: every call here
    succeeds, and the recorder shows one slot per call."""
    recorded = ScriptCalls(monkeypatch)
    first, second, third = (product_with_keys(keys=10, id=pid) for pid in product_ids_on_every_master())  # warm
    coupon = CouponFactory(code="CLUSTER10", max_uses=50)
    placed = order_checkout(sku=first.sku, email="a@x.com", quantity=1, coupon=coupon.code)  # coupon take + warm
    other = order_checkout(sku=second.sku, email="b@x.com", quantity=1)
    later = order_checkout(sku=third.sku, email="c@x.com", quantity=1, coupon=coupon.code)
    persistence.order_persist_queued()
    pay(placed.order_no)  # paid, then (eagerly) fulfilment: finish
    order_cancel(order_no=other.order_no)  # release
    order_cancel(order_no=later.order_no)  # release + coupon release
    gate.stock_strike_add(product_id=first.id, strike_fields=("ip-hash", "device-hash"))
    assert gate.stock_adjust(product_id=second.id, delta=2) == 12
    assert gate.stock_withdraw(product_id=second.id, units=2).code == "ok"
    late = Order.objects.get(order_no=later.order_no)
    assert gate.stock_rereserve(product_id=third.id, reservation=Reservation.from_order(late, paid=True)) == 1
    assert gate.stock_buyers_uncount(product_id=third.id, order_no=later.order_no) is False
    order_mail._lease_release(Order.objects.get(order_no=placed.order_no).id, "not-the-holder")

    assert Order.objects.get(order_no=placed.order_no).status == Order.Status.DELIVERED
    assert recorded.names() == {path.stem for path in LUA_FILES}, "a script was not exercised"
    for name, keys in recorded.calls:
        assert keys, f"{name} was called without keys: a cluster cannot route it"
        assert len({key_slot(key.encode()) for key in keys}) == 1, f"{name} called across slots: {keys}"


def test_python_multi_key_reads_work_across_masters(gate_cluster):
    """Reads that span products (the listing's stock figures, the backlog,
    metrics) go to every master they need, never as one cross-slot command."""
    from apps.stock import overload, selectors

    products = [product_with_keys(keys=3 + n, id=pid) for n, pid in enumerate(product_ids_on_every_master())]
    ids = [p.id for p in products]
    assert selectors.stock_remaining_many(product_ids=ids) == {ids[0]: 3, ids[1]: 4, ids[2]: 5}
    assert selectors.stock_warmed_product_ids() == sorted(ids)
    assert overload.backlog_measure().persist == 0
    assert overload.overload_check() is False
    stock, reservations = selectors.stock_gate_state(product_id=ids[1])
    assert (stock, reservations) == (4, {})


# --- the flash sale over three masters


def cluster_processes(*, beat: bool = False) -> tuple[GunicornServer, CeleryWorker]:
    """gunicorn and a worker on the cluster gate (test_environment passes
    GATE_REDIS_URL and GATE_REDIS_CLUSTER on)."""
    worker = CeleryWorker(concurrency=2, beat=beat).start()
    try:
        server = GunicornServer(workers=2, threads=8).start()
    except BaseException:
        worker.stop()
        raise
    assert worker.env["GATE_REDIS_CLUSTER"] == "true" and server.env["GATE_REDIS_CLUSTER"] == "true"
    return server, worker


def test_2000_buyers_300_keys_over_three_masters_exactly_300_delivered(gate_cluster):
    products = [product_with_keys(keys=100, per_buyer_limit=1, id=pid) for pid in product_ids_on_every_master()]
    assert len({master_of(p) for p in products}) == 3, "the products must cover all three masters"
    server, worker = cluster_processes()
    try:
        crowds = {p.sku: [f"buyer{i}@example.com" for i in range(n, 2000, 3)] for n, p in enumerate(products)}
        answers: dict[str, list] = {}

        def crowd(sku: str):
            answers[sku] = checkout_crowd(server.url, sku, crowds[sku], threads=16)

        threads = [threading.Thread(target=crowd, args=(sku,)) for sku in crowds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        accepted: list[str] = []
        for product in products:
            codes = Counter(status for status, _ in answers[product.sku])
            errors = Counter(body.get("error") for status, body in answers[product.sku] if status != 202)
            expected_refused = len(crowds[product.sku]) - 100
            assert codes == {202: 100, 409: expected_refused}, (product.sku, codes)
            assert errors == {"sold_out": expected_refused}, (product.sku, errors)
            accepted += [body["order_no"] for status, body in answers[product.sku] if status == 202]
        assert len(accepted) == len(set(accepted)) == 300

        persist_reservations_task.delay()
        wait_until(lambda: Order.objects.count() == 300, timeout=60, message="persistence of 300 orders")
        pay_all_concurrently(accepted)
        wait_until(
            lambda: Order.objects.filter(status="delivered").count() == 300, timeout=120, message="300 deliveries"
        )
    finally:
        server.stop()
        worker.stop()

    for product in products:
        orders = list(Order.objects.filter(product=product))
        assert len(orders) == 100 and {o.status for o in orders} == {"delivered"}
        assert_each_key_in_one_order(product, orders)  # P2: no key in two orders
        assert CardKey.objects.filter(product=product, status="available").count() == 0  # P1: exactly what was uploaded
        assert int(stock_redis().get(stock_key(product.id))) == 0
    connection.close()


# --- a master loses its data mid-sale


def test_a_master_that_loses_its_data_pauses_only_its_products_until_rebuilt(gate_cluster):
    """FLUSHALL on one master: what a failover to an empty replica does to
    the products whose slots it serves. They answer 503 sale_paused (fail
    closed) while the products on the other masters keep selling; warm-up
    rebuilds them from MariaDB, and the sale ends with nothing oversold."""
    products = [product_with_keys(keys=60, per_buyer_limit=1, id=pid) for pid in product_ids_on_every_master()]
    lost_product, *kept = products
    server, worker = cluster_processes()
    try:
        for product in products:
            first = checkout_crowd(server.url, product.sku, [f"a{product.id}-{i}@x.com" for i in range(40)])
            assert Counter(s for s, _ in first) == {202: 40}
        for product in products:
            wait_until(lambda p=product: not stock_redis().exists(persist_requested_key(p.id)), timeout=10)
        wait_until(lambda: Order.objects.count() == 120, timeout=30, message="the first 120 orders persisted")

        victim = next(n for n in gate_cluster.nodes if f"127.0.0.1:{n.port}" == master_of(lost_product))
        with victim.client() as client:
            client.flushall()

        paused = checkout_crowd(server.url, lost_product.sku, [f"p{i}@x.com" for i in range(10)])
        assert {(s, b["error"]) for s, b in paused} == {(503, "sale_paused")}
        for product in kept:  # the other masters sell on
            more = checkout_crowd(server.url, product.sku, [f"k{product.id}-{i}@x.com" for i in range(10)])
            assert Counter(s for s, _ in more) == {202: 10}

        assert stock_warm(product=lost_product) == (True, 20)  # 60 keys - 40 orders in MariaDB
        rest = {
            product.sku: checkout_crowd(server.url, product.sku, [f"b{product.id}-{i}@x.com" for i in range(40)])
            for product in products
        }
        assert Counter(s for s, _ in rest[lost_product.sku]) == {202: 20, 409: 20}
        for product in kept:
            assert Counter(s for s, _ in rest[product.sku]) == {202: 10, 409: 30}
        persist_reservations_task.delay()
        wait_until(lambda: Order.objects.count() == 180, timeout=60, message="every order persisted")
        pay_all_concurrently(list(Order.objects.values_list("order_no", flat=True)))
        wait_until(
            lambda: Order.objects.filter(status="delivered").count() == 180, timeout=120, message="180 deliveries"
        )
    finally:
        server.stop()
        worker.stop()
    for product in products:
        orders = list(Order.objects.filter(product=product))
        assert len(orders) == 60
        assert_each_key_in_one_order(product, orders)
        assert CardKey.objects.filter(product=product, status="available").count() == 0
        assert int(stock_redis().get(stock_key(product.id))) == 0
    connection.close()


# --- a master restarts on its own data: the per-master run id


def test_a_master_restarted_on_its_data_is_noticed_until_its_gates_are_forgotten(gate_cluster, monkeypatch):
    """SIGKILL one master and start it again on its append-only file: its
    data comes back, but it may lag what MariaDB recorded, so its gates are
    forgotten and rebuilt (those on the other masters are as good as
    before and stay). The run id is recorded only after the forget: a
    forget that fails midway leaves the restart to be detected again. A
    master down meanwhile does not hide the restart of another; the
    restart is reported once."""
    products = [product_with_keys(keys=5, id=pid) for pid in product_ids_on_every_master()]
    assert gates_check_redis_restart() == []  # first look: the markers are written
    assert gates_check_redis_restart() == []  # nothing restarted since
    victim = next(n for n in gate_cluster.nodes if f"127.0.0.1:{n.port}" == master_of(products[2]))
    down = next(n for n in gate_cluster.nodes if f"127.0.0.1:{n.port}" == master_of(products[0]))
    victim.kill()
    victim.start()
    gate_cluster.wait_ok(timeout=30)
    stock_redis().nodes_manager.initialize()  # the client reconnects to the restarted node
    assert int(stock_redis().get(stock_key(products[2].id))) == 5  # the file kept it

    def failing_forget(**_kwargs):
        raise ConnectionError("the forget failed midway")

    monkeypatch.setattr(gate, "stock_gate_forget", failing_forget)
    with pytest.raises(ConnectionError):
        gates_check_redis_restart()
    monkeypatch.undo()
    os.kill(down.pid, signal.SIGSTOP)  # hung, not restarted: its run id stays
    try:
        assert gates_check_redis_restart() == [products[2].id], "the restart was not detected again"
    finally:
        os.kill(down.pid, signal.SIGCONT)
    gate_cluster.wait_ok(timeout=30)
    assert not stock_redis().exists(stock_key(products[2].id)), "the restarted master's gate was left standing"
    for product in products[:2]:
        assert int(stock_redis().get(stock_key(product.id))) == 5, "a gate on a master that did not restart was lost"
    assert stock_warm(product=products[2]) == (True, 5)
    assert gates_check_redis_restart() == []  # reported once


def test_every_order_answered_202_survives_a_master_sigkill_mid_sale(gate_cluster):
    """The crash test of tests/test_redis_crash.py on the cluster: crowds buy
    three products, one per master; the persister is frozen so reservations
    wait in Redis only; one master is SIGKILLed and started again on its
    append-only file. The products on the other masters sell on meanwhile;
    beat sees that master's new run id, every gate is rebuilt from MariaDB
    plus the queues the file kept, and checkout reopens. Every order number
    answered 202 ends as an order row, and nothing is oversold."""
    keys = 600
    products = [product_with_keys(keys=keys, per_buyer_limit=1, id=pid) for pid in product_ids_on_every_master()]
    victim_product, *kept = products
    victim = next(n for n in gate_cluster.nodes if f"127.0.0.1:{n.port}" == master_of(victim_product))
    worker = CeleryWorker(concurrency=2, beat=True).start()
    server = GunicornServer(workers=2, threads=8).start()
    crowds = {p.sku: Crowd(base=server.url, sku=p.sku) for p in products}
    victim_crowd = crowds[victim_product.sku]

    def total() -> int:
        return sum(crowd.count() for crowd in crowds.values())

    try:
        for crowd in crowds.values():
            crowd.start()
        wait_until(lambda: victim_crowd.count() >= 30, timeout=30, message="the first orders")
        os.killpg(worker.pid, signal.SIGSTOP)  # from now on answered orders wait in Redis only
        frozen_at = victim_crowd.count()
        wait_until(lambda: victim_crowd.count() >= frozen_at + 30, timeout=30, message="orders while frozen")
        victim.kill()
        victim_answered_at_kill, kept_answered_at_kill = victim_crowd.count(), total() - victim_crowd.count()
        os.killpg(worker.pid, signal.SIGCONT)
        time.sleep(1.0)  # the victim's crowd meets a dead master; the others sell on
        kept_during_outage = total() - victim_crowd.count() - kept_answered_at_kill
        victim.start()
        gate_cluster.wait_ok(timeout=30)
        wait_until(
            lambda: victim_crowd.count() >= victim_answered_at_kill + 30,
            timeout=40,
            message="checkout of the victim's product reopened after the restart",
        )
    finally:
        for crowd in crowds.values():
            crowd.stop()
        server.stop()
    try:
        accepted = {no for crowd in crowds.values() for no in crowd.accepted}
        assert len(accepted) == sum(len(crowd.accepted) for crowd in crowds.values()), "a number answered twice"

        def recorded() -> set[str]:
            return set(Order.objects.filter(order_no__in=accepted).values_list("order_no", flat=True))

        try:
            wait_until(lambda: recorded() == accepted, timeout=30, message="every answered order in MariaDB")
        except AssertionError:
            missing = sorted(accepted - recorded())
            raise AssertionError(
                f"{len(missing)} of {len(accepted)} orders answered 202 never reached MariaDB; e.g. {missing[:5]}"
                f"\n{worker.log_tail()}"
            ) from None
        # The victim sold again on its file before beat noticed its restart:
        # wait for the notice, the forget and the rebuild.
        wait_until(
            lambda: (
                not gate.stock_redis_restarts().restarted
                and all(stock_redis().exists(stock_key(p.id)) for p in products)
            ),
            timeout=30,
            message="the restart noticed and every gate rebuilt",
        )
    finally:
        worker.stop()

    assert victim_crowd.refused.get(503, 0) > 0, "the victim's product never failed closed"
    assert kept_during_outage > 0, "the products on the other masters stopped selling while one master was down"
    for product in products:
        orders = Order.objects.filter(product=product)
        assert orders.count() <= keys
        assert int(stock_redis().get(stock_key(product.id))) == keys - orders.count()
    connection.close()


# --- a script is sent once: no retry after a timeout

# Adds 100 to its key, then stays busy for ARGV[1] ms: a reply later than the
# client's socket timeout, as from a master stalled mid-script.
SLOW_SCRIPT = """
redis.call('INCRBY', KEYS[1], 100)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local start = now_ms()
while now_ms() - start < tonumber(ARGV[1]) do end
return 1
"""


def test_a_script_whose_reply_outlasts_the_socket_timeout_runs_once(gate_cluster):
    """redis-py's cluster client re-sends a command after a timeout (ten
    times by default): a checkout or a stock adjustment would be applied
    again each time. The gate's client sends it once and the caller gets
    the error (it may have run: the callers treat a timeout as unknown)."""
    from redis.exceptions import TimeoutError as RedisTimeout

    client = stock_redis()
    counter = stock_key(999_001)
    client.delete(counter)
    slow = client.register_script(SLOW_SCRIPT)
    started = time.monotonic()
    with pytest.raises(RedisTimeout) as raised:
        slow(keys=[counter], args=[1500])
    assert not gate_error_before_sending(raised.value), "a read timeout counted as a call never sent"
    assert time.monotonic() - started < 3, "the caller waited for retries"
    wait_until(lambda: client.get(counter) is not None, timeout=5, message="the script's effect")
    time.sleep(1.0)  # a re-sent call would have run by now
    assert int(client.get(counter)) == 100, "the script ran more than once"


# --- a hung master stops only its own products


def test_a_hung_master_costs_its_own_products_only_and_a_bounded_wait(gate_cluster, client):
    """SIGSTOP one master (a host that hangs or is cut off, not one that
    refuses): checkout of a product on a healthy master answers as usual,
    in bounded time, and the listing shows the healthy products' stock
    (the hung master's products unknown) within about one socket timeout."""
    ids = product_ids_on_every_master(per_master=2)
    products = [product_with_keys(keys=4, id=pid) for pid in ids]
    hung_products, healthy = products[:2], products[2:]
    victim = next(n for n in gate_cluster.nodes if f"127.0.0.1:{n.port}" == master_of(hung_products[0]))
    assert stock_redis().get(stock_key(healthy[0].id)) == b"4"  # pooled connections to every master
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        placed = order_checkout(sku=healthy[0].sku, email="healthy@x.com", quantity=1)
        checkout_seconds = time.monotonic() - started
        started = time.monotonic()
        remaining = stock_remaining_many(product_ids=[p.id for p in products])
        listing_seconds = time.monotonic() - started
        started = time.monotonic()
        page = client.get("/")
        page_seconds = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(SalePaused):
            order_checkout(sku=hung_products[0].sku, email="hung@x.com", quantity=1)
        hung_seconds = time.monotonic() - started
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    gate_cluster.wait_ok(timeout=30)
    print(
        f"hung master: checkout elsewhere {checkout_seconds:.2f}s, stock of 6 {listing_seconds:.2f}s,"
        f" page {page_seconds:.2f}s, checkout on it {hung_seconds:.2f}s (503)"
    )
    assert placed.order_no
    assert checkout_seconds < 3, f"checkout on a healthy master took {checkout_seconds:.1f}s"
    assert remaining == {**{p.id: None for p in hung_products}, healthy[0].id: 3, **{p.id: 4 for p in healthy[1:]}}
    assert listing_seconds < 3, f"the stock of {len(products)} products took {listing_seconds:.1f}s"
    assert page.status_code == 200 and page_seconds < 5, (page.status_code, page_seconds)
    assert hung_seconds < 3, f"checkout on the hung master took {hung_seconds:.1f}s to fail closed"


# --- the client starts from any listed node, and fails closed without any


def test_the_gate_client_starts_from_any_listed_node_and_fails_closed_without_any(gate_cluster, settings, client):
    """GATE_REDIS_URL lists every master: a process starting while the first
    is down still finds the cluster through another. With none reachable,
    checkout answers 503 sale_paused (as with a dead single Redis), both in
    a process whose client was built before and in one starting now."""
    first, *others = gate_cluster.nodes
    pid = next(pid for pid in product_ids_on_every_master() if master_of_id(pid) != f"127.0.0.1:{first.port}")
    product = product_with_keys(keys=3, id=pid)
    settings.GATE_REDIS_URL = ",".join(node.url for node in gate_cluster.nodes)
    stock_redis().ping()  # a client built while all were up
    first.kill()
    try:
        gate_clients_forget()  # as in a process started now
        assert stock_remaining_many(product_ids=[product.id]) == {product.id: 3}
        assert create_order(client, product.sku, "first-down@x.com").status_code == 202
        for node in others:
            node.kill()
        for fresh in (False, True):
            if fresh:
                gate_clients_forget()
            answer = create_order(client, product.sku, f"none-up-{fresh}@x.com")
            assert (answer.status_code, answer.json()["error"]) == (503, "sale_paused"), (fresh, answer.content)
    finally:
        for node in gate_cluster.nodes:
            if not node.alive():
                node.start()
        gate_cluster.wait_ok(timeout=30)
        gate_clients_forget()


def master_of_id(product_id: int) -> str:
    return stock_redis().get_node_from_key(stock_key(product_id)).name


def create_order(client, sku: str, email: str):
    body = {"sku": sku, "email": email, "quantity": 1}
    return client.post("/api/v1/orders", data=json.dumps(body), content_type="application/json")


# --- readiness: ready while any master answers


def test_readiness_stays_while_any_master_answers_and_names_none_when_all_are_down(gate_cluster, client):
    """One master dead: /readyz stays 200 (its products fail closed on their
    own) and says a master is down; the metric names it. No master
    answering: 503. Each answer within a bounded time."""
    from apps.monitoring.collector import ShopStateCollector

    first, *others = gate_cluster.nodes
    first.kill()
    try:
        started = time.monotonic()
        ready = client.get("/readyz")
        one_down_seconds = time.monotonic() - started
        masters = {s.labels["node"]: s.value for s in ShopStateCollector()._gate_masters().samples}
        for node in others:
            os.kill(node.pid, signal.SIGSTOP)  # the rest hung: none answers
        try:
            started = time.monotonic()
            unready = client.get("/readyz")
            none_seconds = time.monotonic() - started
        finally:
            for node in others:
                os.kill(node.pid, signal.SIGCONT)
    finally:
        first.start()
        gate_cluster.wait_ok(timeout=30)
    print(f"readyz: one master dead {one_down_seconds:.2f}s, none answering {none_seconds:.2f}s")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["checks"]["gate_redis"] == "ok: 1 of 3 gate masters down"
    assert one_down_seconds < 4
    assert masters == {f"127.0.0.1:{n.port}": (0 if n is first else 1) for n in gate_cluster.nodes}
    assert unready.status_code == 503
    assert unready.json()["checks"]["gate_redis"].startswith("error: ")
    assert none_seconds < 15


# --- a coupon's use comes back when the product's master refused the call


def test_a_coupon_use_comes_back_at_once_when_the_products_master_is_dead(gate_cluster):
    """The coupon's counters live on one master, the product's gate on
    another. With the product's master dead, checkout pauses (503) and the
    use it took goes back at once (the connection was refused: the script
    never ran), so a crowd retrying does not burn a capped coupon."""
    from apps.coupons.selectors import coupon_uses_taken
    from apps.stock.redis_keys import coupon_uses_key

    coupon = CouponFactory(code="DEADMASTER", max_uses=3)
    coupon_master = stock_redis().get_node_from_key(coupon_uses_key(coupon.id)).name
    pid = next(pid for pid in product_ids_on_every_master() if master_of_id(pid) != coupon_master)
    product = product_with_keys(keys=10, id=pid)
    placed = order_checkout(sku=product.sku, email="first@x.com", quantity=1, coupon=coupon.code)
    assert placed.order_no and coupon_uses_taken(coupon_id=coupon.id) == 1
    victim = next(n for n in gate_cluster.nodes if f"127.0.0.1:{n.port}" == master_of(product))
    victim.kill()
    try:
        for n in range(5):
            with pytest.raises(SalePaused):
                order_checkout(sku=product.sku, email=f"crowd{n}@x.com", quantity=1, coupon=coupon.code)
        assert coupon_uses_taken(coupon_id=coupon.id) == 1, "uses of checkouts that never reached the gate were kept"
    finally:
        victim.start()
        gate_cluster.wait_ok(timeout=30)


# --- only a moved slot runs a pipelined script again


def test_a_pipelined_script_that_fails_is_not_run_again(gate_cluster, monkeypatch):
    """_cluster_pipelined runs a call again alone only when its slot moved
    (MOVED, ASK, TRYAGAIN: it did not run). A script that ran and then
    failed is not run a second time; its error is raised."""
    from redis.exceptions import ResponseError

    from apps.stock import scripts

    failing = "redis.call('INCR', KEYS[1]) return redis.error_reply('ERR failed after writing')"
    real_source = scripts._source
    monkeypatch.setattr(scripts, "_source", lambda name: failing if name == "test-fails" else real_source(name))
    counters = [stock_key(pid) for pid in product_ids_on_every_master()]
    with pytest.raises(ResponseError, match="failed after writing"):
        scripts.lua_scripts_pipelined([("test-fails", [key], []) for key in counters])
    assert [int(stock_redis().get(key)) for key in counters] == [1, 1, 1], "a failed script ran again"
