"""The read replica for real: a private MariaDB primary and GTID replica
(testing/mariadb_pair.py), the shop migrated onto the primary, and gunicorn
serving it with DATABASE_URL on the primary and DATABASE_REPLICA_URL on the
replica. The replica is made to lag deterministically by holding a global read
lock on it (FLUSH TABLES WITH READ LOCK: its SQL thread waits, readers do
not), stopped with STOP SLAVE, and killed.

One pair and one web server for the module, and a short-lived second server
where a test needs other settings (one second of lag allowed; a verdict that
stands for a minute, so reads reach a replica that froze or died). The
replica's link to its primary is silenced through a TCP forwarder
(testing/tcp_proxy.py), and the replica frozen with SIGSTOP. The tests run in
file order and the last one kills the replica."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import redis
import requests
from django.conf import settings

from apps.orders.tests.processes import GunicornServer
from testing.admin_forms import admin_form_values
from testing.mariadb_pair import MariaDBPair
from testing.processes import ROOT, wait_until
from testing.tcp_proxy import PausableProxy

PASSWORD = "replica-pass-1"
QUERY_TIMEOUT = 2
# Settings of the web server under test: a check every half second; a lag
# allowance long enough that the replica held behind by the read lock stays
# in use for the whole test (so what it serves is observable); a writer reads
# the primary for a minute.
SERVER_SETTINGS = {
    "REPLICA_MAX_LAG_SECONDS": "60",
    "REPLICA_CHECK_SECONDS": "0.5",
    "REPLICA_READ_YOUR_WRITES_SECONDS": "60",
    "REPLICA_CONNECT_TIMEOUT_SECONDS": "1",
    # A frozen replica holds a read this long at most (then the primary answers it).
    "REPLICA_QUERY_TIMEOUT_SECONDS": str(QUERY_TIMEOUT),
    # Persistent connections, as production keeps them: a replica that dies
    # under an open connection is found by Django's health check.
    "TEST_DATABASE_CONN_MAX_AGE": "60",
}

SETUP = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
from apps.catalog.tests.factories import ProductFactory
from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory
from cardshop.db_router import primary_reads

with primary_reads():
    get_user_model().objects.create_superuser("boss", "boss@example.com", %(password)r)
    alpha = ProductFactory(sku="REPL-A", title="Alpha", title_en="Alpha")
    delta = ProductFactory(sku="REPL-D", title="Delta", title_en="Delta")
    unpaid, unpaid_token = OrderFactory.create_with_token(product=alpha)
    expired, expired_token = OrderFactory.create_with_token(product=alpha, status=Order.Status.EXPIRED)
    delivered, delivered_token = OrderFactory.create_with_token(product=alpha, status=Order.Status.DELIVERED)
print(json.dumps({
    "alpha_id": alpha.id,
    "unpaid": [unpaid.order_no, unpaid_token],
    "expired": [expired.order_no, expired_token],
    "delivered": [delivered.order_no, delivered_token],
}))
"""


def _manage_env(pair: MariaDBPair, redis_prefix: str) -> dict:
    environment = dict(os.environ)
    environment.update(
        DJANGO_SETTINGS_MODULE="cardshop.settings.test",
        DATABASE_URL=pair.primary_url,
        DATABASE_REPLICA_URL=pair.replica_url,
        TEST_REDIS_KEY_PREFIX=redis_prefix,
        **SERVER_SETTINGS,
    )
    return environment


def _run(argv: list[str], *, env: dict, timeout: float) -> str:
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv[:4])} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def mariadb_pair():
    """A private primary and replica for the module, removed afterwards."""
    with MariaDBPair(database="cardshop_replica_test") as pair:
        yield pair


@pytest.fixture(scope="module")
def stack(mariadb_pair):
    pair = mariadb_pair
    redis_prefix = f"{settings.REDIS_KEY_PREFIX}-pair-{uuid.uuid4().hex[:8]}"
    environment = _manage_env(pair, redis_prefix)
    _run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env=environment, timeout=300)
    data = json.loads(
        _run([sys.executable, "-c", SETUP % {"password": PASSWORD}], env=environment, timeout=120)
        .strip()
        .splitlines()[-1]
    )
    pair.wait_caught_up(timeout=30)
    with _web_server(pair, redis_prefix=redis_prefix) as server:
        yield pair, server, data


def _title(session: requests.Session, url: str) -> str:
    """The product's title on its page (its <h1>)."""
    response = session.get(url, timeout=10)
    assert response.status_code == 200, f"GET {url} answered {response.status_code}"
    match = re.search(r"<h1[^>]*>\s*(.*?)\s*</h1>", response.text, re.S)
    assert match, f"no <h1> on {url}"
    return match.group(1)


def _merchant(server) -> requests.Session:
    session = requests.Session()
    login = f"{server.url}/admin/login/?next=/admin/"
    page = session.get(login, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        login,
        data={"csrfmiddlewaretoken": token, "username": "boss", "password": PASSWORD, "next": "/admin/"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/admin/", answer.text[-2000:]
    return session


def _metric(server, name: str, **labels) -> float | None:
    body = requests.get(f"{server.url}/metrics", timeout=10).text
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in body.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


class ReplicaReadLock:
    """FLUSH TABLES WITH READ LOCK on the replica: its SQL thread waits to
    apply the next transaction (its lag grows), while reads go on."""

    def __init__(self, pair: MariaDBPair):
        self.connection = pair.replica.connect()

    def __enter__(self):
        self.connection.cursor().execute("FLUSH TABLES WITH READ LOCK")
        return self

    def __exit__(self, *exc):
        self.connection.cursor().execute("UNLOCK TABLES")
        self.connection.close()


def _replica_title(pair: MariaDBPair, sku: str) -> str:
    return pair.replica.sql(f"SELECT title_zh_hans FROM cardshop_replica_test.catalog_product WHERE sku='{sku}'")[0][0]


def test_an_edit_shows_to_buyers_when_the_replica_has_it_and_to_its_merchant_at_once(stack):
    pair, server, data = stack
    buyer = requests.Session()
    product_url = f"{server.url}/p/REPL-A"
    assert _title(buyer, product_url) == "Alpha"  # now cached
    assert _metric(server, "cardshop_db_replica_in_use", alias="replica") == 1.0

    merchant = _merchant(server)
    change_url = f"{server.url}/admin/catalog/product/{data['alpha_id']}/change/"
    values = admin_form_values(merchant, change_url)
    with ReplicaReadLock(pair):
        edit = {"title_zh_hans": "Beta", "title_en": "Beta"}
        answer = merchant.post(change_url, data={**values, **edit, "_save": "Save"}, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text[-3000:]
        assert "cardshop_wrote" in merchant.cookies  # the read-your-writes mark
        assert pair.primary.sql(
            "SELECT title_zh_hans FROM cardshop_replica_test.catalog_product WHERE sku='REPL-A'"
        ) == [("Beta",)]
        time.sleep(1.5)  # the replica's lag check has run since
        assert _replica_title(pair, "REPL-A") == "Alpha"
        lag = _metric(server, "cardshop_db_replica_lag_seconds", alias="replica")
        assert lag is not None and lag >= 1, lag

        # The edit dropped the cached copy; buyers read the lagging replica
        # (and do not cache what they read), its merchant reads the primary.
        assert _title(buyer, product_url) == "Alpha"
        assert "Alpha" in buyer.get(f"{server.url}/", timeout=10).text
        assert _title(merchant, product_url) == "Beta"
        assert _title(buyer, product_url) == "Alpha"  # the merchant's read did not fill the cache either

        # Order lookups: a settled order is answered by the replica, one in
        # flight by the primary (the poll after payment sees it paid). An
        # expired order is not settled: a late payment still moves it.
        pair.primary.sql(
            f"UPDATE cardshop_replica_test.orders_order SET quantity = 7 WHERE order_no = '{data['delivered'][0]}'",
            f"UPDATE cardshop_replica_test.orders_order SET status = 'paid' WHERE order_no = '{data['unpaid'][0]}'",
            f"UPDATE cardshop_replica_test.orders_order SET status = 'paid' WHERE order_no = '{data['expired'][0]}'",
        )
        delivered = _order(buyer, server, *data["delivered"])
        unpaid = _order(buyer, server, *data["unpaid"])
        expired = _order(buyer, server, *data["expired"])
        assert (delivered["status"], delivered["quantity"]) == ("delivered", 1)  # the replica's row
        assert unpaid["status"] == "paid"  # the primary's
        assert expired["status"] == "paid"  # the primary's: paid late

    pair.wait_caught_up(timeout=30)
    assert _replica_title(pair, "REPL-A") == "Beta"
    # Not a stale copy cached while the replica lagged (that would last
    # PRODUCT_CACHE_TTL); each process keeps its replica read for a second.
    wait_until(lambda: _title(buyer, product_url) == "Beta", timeout=5, message="the edit on the storefront")
    assert _order(buyer, server, *data["delivered"])["quantity"] == 7


def _order(session: requests.Session, server, order_no: str, token: str) -> dict:
    response = session.get(f"{server.url}/api/v1/orders/{order_no}", headers={"X-Order-Token": token}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_stopped_replication_moves_reads_to_the_primary(stack):
    pair, server, data = stack
    buyer = requests.Session()
    pair.replication_stop()
    try:
        # Written on the primary only; REPL-D was never viewed, so not cached.
        pair.primary.sql("UPDATE cardshop_replica_test.catalog_product SET title_zh_hans = 'Echo' WHERE sku='REPL-D'")
        time.sleep(1.0)
        assert _replica_title(pair, "REPL-D") == "Delta"
        wait_until(
            lambda: _metric(server, "cardshop_db_replica_in_use", alias="replica") == 0.0,
            timeout=10,
            message="the replica reported out of use",
        )
        assert _title(buyer, f"{server.url}/p/REPL-D") == "Echo"
        assert _metric(server, "cardshop_db_replica_checks_total", verdict="stopped") >= 1
        assert _metric(server, "cardshop_db_replica_fallback_reads_total") >= 1
    finally:
        pair.replication_start()
    pair.wait_caught_up(timeout=30)
    wait_until(
        lambda: _metric(server, "cardshop_db_replica_in_use", alias="replica") == 1.0,
        timeout=10,
        message="the replica back in use",
    )


@contextmanager
def _web_server(pair: MariaDBPair, *, redis_prefix: str | None = None, **overrides: str):
    """A web server on the pair, with settings of its own and a Redis prefix
    of its own (a new one, with nothing cached yet, unless given); the
    prefix's Redis keys are removed afterwards."""
    metrics_dir = tempfile.mkdtemp(prefix="replica-metrics-")
    redis_prefix = redis_prefix or f"{settings.REDIS_KEY_PREFIX}-pair-{uuid.uuid4().hex[:8]}"
    server = GunicornServer(
        workers=1,
        threads=4,
        extra_env={
            "DATABASE_URL": pair.primary_url,
            "DATABASE_REPLICA_URL": pair.replica_url,
            "TEST_REDIS_KEY_PREFIX": redis_prefix,
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            **SERVER_SETTINGS,
            **overrides,
        },
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        client = redis.Redis.from_url(settings.REDIS_URL)
        for name in client.scan_iter(f"{redis_prefix}*", count=1000):
            client.delete(name)


@pytest.fixture
def strict_server(stack):
    """A web server that allows the replica one second of lag."""
    with _web_server(stack[0], REPLICA_MAX_LAG_SECONDS="1", REPLICA_CHECK_SECONDS="0.5") as server:
        assert _metric(server, "cardshop_db_replica_in_use", alias="replica") == 1.0
        yield server


def test_a_replica_lagging_past_the_limit_sends_reads_to_the_primary(stack, strict_server):
    pair, _server, _data = stack
    buyer = requests.Session()
    with ReplicaReadLock(pair):
        pair.primary.sql("UPDATE cardshop_replica_test.catalog_product SET title_zh_hans = 'Golf' WHERE sku='REPL-D'")
        wait_until(
            lambda: _metric(strict_server, "cardshop_db_replica_in_use", alias="replica") == 0.0,
            timeout=10,
            message="the lagging replica reported out of use",
        )
        assert _replica_title(pair, "REPL-D") != "Golf"
        assert _metric(strict_server, "cardshop_db_replica_checks_total", verdict="lagging") >= 1
        assert _metric(strict_server, "cardshop_db_replica_lag_seconds", alias="replica") > 1
        assert _title(buyer, f"{strict_server.url}/p/REPL-D") == "Golf"  # the primary's
    pair.wait_caught_up(timeout=30)
    wait_until(
        lambda: _metric(strict_server, "cardshop_db_replica_in_use", alias="replica") == 1.0,
        timeout=10,
        message="the replica back in use once caught up",
    )


def test_a_replica_cut_off_from_its_primary_lags_by_gtid_though_seconds_behind_master_says_0(stack, strict_server):
    """The link from the replica to its primary goes silent (nothing closed,
    nothing refused): the IO thread waits, running, for slave_net_timeout;
    the SQL thread has applied all it got, so Seconds_Behind_Master is 0.
    The GTID positions say the replica lacks the primary's latest write."""
    pair, _server, _data = stack
    buyer = requests.Session()
    with PausableProxy(upstream_port=pair.primary.port) as proxy:
        pair.replica.sql("STOP SLAVE", f"CHANGE MASTER TO MASTER_PORT={proxy.port}", "START SLAVE")
        try:
            pair.wait_caught_up(timeout=30)
            wait_until(
                lambda: _metric(strict_server, "cardshop_db_replica_in_use", alias="replica") == 1.0,
                timeout=10,
                message="the replica in use behind the proxy",
            )
            proxy.pause()
            pair.primary.sql(
                "UPDATE cardshop_replica_test.catalog_product SET title_zh_hans = 'Hotel' WHERE sku='REPL-D'"
            )
            time.sleep(1.0)
            status = pair.replica_status()
            assert (status["Slave_IO_Running"], status["Slave_SQL_Running"], status["Seconds_Behind_Master"]) == (
                "Yes",
                "Yes",
                0,
            )
            assert not pair.caught_up()
            wait_until(
                lambda: _metric(strict_server, "cardshop_db_replica_in_use", alias="replica") == 0.0,
                timeout=10,
                message="the cut-off replica reported out of use",
            )
            assert pair.replica_status()["Seconds_Behind_Master"] == 0  # still
            assert _metric(strict_server, "cardshop_db_replica_checks_total", verdict="lagging") >= 1
            assert _title(buyer, f"{strict_server.url}/p/REPL-D") == "Hotel"  # the primary's
            proxy.resume()
            pair.wait_caught_up(timeout=30)
        finally:
            pair.replication_start()  # straight to the primary again
    pair.wait_caught_up(timeout=30)
    wait_until(
        lambda: _metric(strict_server, "cardshop_db_replica_in_use", alias="replica") == 1.0,
        timeout=10,
        message="the replica back in use once caught up",
    )


@pytest.fixture
def steady_server(stack):
    """A second web server on the same pair whose verdict, once "ok", stands
    for a minute: its reads reach a replica that froze or died since, so what
    the replica backend does then (bounded waits, the primary answering) is
    what a request sees, not the router's next check."""
    pair, _server, data = stack
    with _web_server(pair, REPLICA_CHECK_SECONDS="60") as server:
        # Every thread opens its persistent connection to the replica.
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in pool.map(lambda _: _order(requests.Session(), server, *data["delivered"]), range(16)):
                pass
        assert _metric(server, "cardshop_db_replica_in_use", alias="replica") == 1.0
        yield server


def _timed_order(server, order_no: str, token: str) -> float:
    started = time.monotonic()
    response = requests.get(
        f"{server.url}/api/v1/orders/{order_no}", headers={"X-Order-Token": token}, timeout=QUERY_TIMEOUT * 6
    )
    assert response.status_code == 200, response.text[-2000:]
    return time.monotonic() - started


def test_a_replica_read_that_hangs_is_answered_by_the_primary(stack, steady_server):
    """A table lock on the replica holds the lookup's query (the connection's
    health check passes): the read times out and runs again on the primary."""
    pair, _server, data = stack
    lock = pair.replica.connect()
    try:
        lock.cursor().execute("LOCK TABLES cardshop_replica_test.orders_order WRITE")
        took = _timed_order(steady_server, *data["delivered"])
    finally:
        lock.close()
    print(f"\nlookup with the replica's table locked: {took:.2f} s (read timeout {QUERY_TIMEOUT} s)")
    assert took < QUERY_TIMEOUT + 2, took
    assert _metric(steady_server, "cardshop_db_replica_failovers_total", stage="query") >= 1
    assert _metric(steady_server, "cardshop_db_replica_in_use", alias="replica") == 0.0


def test_a_frozen_replica_holds_no_request_longer_than_its_timeouts(stack, steady_server):
    """SIGSTOP: the replica's connections stay open and its port accepts, but
    nothing answers (a frozen VM, a partition that drops packets)."""
    pair, _server, data = stack
    os.kill(pair.replica.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            took = list(pool.map(lambda _: _timed_order(steady_server, *data["delivered"]), range(8)))
        took.append(_timed_order(steady_server, *data["delivered"]))
    finally:
        os.kill(pair.replica.pid, signal.SIGCONT)
    print(f"\nlookups with the replica frozen: {', '.join(f'{t:.2f}' for t in took)} s")
    # A health check's ping (read timeout), then a connection attempt (connect timeout).
    assert max(took) < QUERY_TIMEOUT + int(SERVER_SETTINGS["REPLICA_CONNECT_TIMEOUT_SECONDS"]) + 2, took
    assert took[-1] < 1, took  # the replica is known unfit by then
    assert _metric(steady_server, "cardshop_db_replica_in_use", alias="replica") == 0.0
    pair.wait_caught_up(timeout=30)


def test_a_killed_replica_leaves_every_page_answering(stack, steady_server):
    pair, server, data = stack
    buyer = requests.Session()
    pair.replica.kill()
    # A request routed to the replica just before its death: the replica
    # backend connects to the primary instead.
    assert _order(buyer, steady_server, *data["delivered"])["status"] == "delivered"
    assert _metric(steady_server, "cardshop_db_replica_failovers_total", stage="connect") >= 1
    started = time.monotonic()
    for url in ("/", "/p/REPL-A", "/p/REPL-D", "/p/NO-SUCH-SKU"):
        response = buyer.get(f"{server.url}{url}", timeout=10)
        assert response.status_code == (404 if "NO-SUCH" in url else 200), (url, response.status_code)
    for order_no, token in (data["expired"], data["unpaid"]):
        assert _order(buyer, server, order_no, token)["order_no"] == order_no
        page = buyer.get(f"{server.url}/orders/{order_no}?token={token}", timeout=10)
        assert page.status_code == 200, page.status_code
    # A dead replica is noticed once per check interval, not waited for per request.
    assert time.monotonic() - started < 10
    assert _metric(server, "cardshop_db_replica_in_use", alias="replica") == 0.0
    assert _metric(server, "cardshop_db_replica_checks_total", verdict="unreachable") >= 1

    # Started again, it replicates what it missed and serves reads again.
    pair.replica.start()
    pair.replication_start()
    pair.wait_caught_up(timeout=30)
    wait_until(
        lambda: _metric(server, "cardshop_db_replica_in_use", alias="replica") == 1.0,
        timeout=10,
        message="the restarted replica back in use",
    )
