"""The shop under a real Granian (scripts/granian_serve.py) does what it does
under gunicorn: metrics add up across workers from zero and forget dead
workers' live gauges, the access log names the path and request id but never
a token, the request id is echoed or made up, SIGHUP replaces the workers
while in-flight requests finish, and a request still running after the
graceful timeout is cut; and `make run` starts it when WEB_SERVER=granian."""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from apps.monitoring.tests.sale import samples, value
from apps.orders.tests import processes
from apps.orders.tests.processes import GranianServer
from apps.orders.tests.support import product_with_keys
from testing.processes import ROOT, ChildProcess, free_port, wait_until

SLOW_SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.web_server_settings"}


def _get(url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _checkout(url: str, sku: str, email: str) -> dict:
    body = json.dumps({"sku": sku, "email": email, "quantity": 1}).encode()
    request = urllib.request.Request(f"{url}/api/v1/orders", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        return json.loads(response.read())


def _worker_pids(server: GranianServer) -> set[int]:
    """The workers Granian says it started and that still run."""
    started = {int(pid) for pid in re.findall(r"Spawning worker-\d+ with PID: (\d+)", server.log())}
    return {pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"}


def _live_gauge_plant(directory, pid: int, amount: float) -> None:
    """What a worker with a livesum gauge leaves in the directory."""
    planted = MmapedDict(str(directory / f"gauge_livesum_{pid}.db"))
    key = mmap_key("cardshop_test_live", "cardshop_test_live", [], [], "planted by the test")
    planted.write_value(key, amount, time.time())
    planted.close()


@pytest.mark.django_db(transaction=True)
def test_metrics_add_up_across_granian_workers_and_dead_workers_are_forgotten(tmp_path):
    web_dir = tmp_path / "web"
    web_dir.mkdir()
    (web_dir / "counter_4242.db").write_bytes(b"left over from a previous run")  # the launcher empties it
    product = product_with_keys(keys=10, per_buyer_limit=1)
    server = GranianServer(
        workers=2,
        threads=4,
        args=("--respawn-interval", "1"),
        extra_env={"PROMETHEUS_MULTIPROC_DIR": str(web_dir)},
    )
    try:
        server.start()
        assert not (web_dir / "counter_4242.db").exists()
        threads = [
            threading.Thread(target=_checkout, args=(server.url, product.sku, f"g{i}@example.com")) for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Each scrape is answered by either worker; each must count all eight.
        for _ in range(6):
            _, _, page = _get(f"{server.url}/metrics")
            assert value(samples(page.decode()), "cardshop_checkouts_total", outcome="accepted") == 8

        old = _worker_pids(server)
        assert len(old) == 2, server.log_tail()
        for pid in old:
            _live_gauge_plant(web_dir, pid, 1.0)
        _, _, page = _get(f"{server.url}/metrics")
        assert value(samples(page.decode()), "cardshop_test_live") == 2

        os.kill(server.pid, signal.SIGHUP)  # the master only, as an orchestrator signals PID 1
        wait_until(
            lambda: not any(psutil.pid_exists(pid) for pid in old) and len(_worker_pids(server)) == 2,
            timeout=30,
            message="Granian to replace both workers",
        )
        assert not list(web_dir.glob("gauge_livesum_*.db")), sorted(p.name for p in web_dir.iterdir())
        # Each Granian worker listens on its own socket once it has loaded the app.
        server.wait_until(
            lambda: server.log().count("Started worker-") == 4, timeout=30, what="the new workers to listen"
        )
        _, _, page = _get(f"{server.url}/metrics")
        scraped = samples(page.decode())
        assert "cardshop_test_live" not in {name for name, _ in scraped}, scraped
        # Counters of the stopped workers still count, as under gunicorn.
        assert value(scraped, "cardshop_checkouts_total", outcome="accepted") == 8
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_the_access_log_names_path_and_request_id_but_never_a_token():
    product = product_with_keys(keys=2, per_buyer_limit=1)
    server = GranianServer(workers=1, threads=4, args=("--access-log",), extra_env={"LOG_LEVEL": "INFO"})
    try:
        server.start()
        order = _checkout(server.url, product.sku, "log@example.com")
        token = order["access_token"]
        assert len(token) >= 16
        status, headers, _ = _get(
            f"{server.url}/api/v1/orders/{order['order_no']}?token={token}", {"X-Request-ID": "given-id-1"}
        )
        assert status == 200
        assert headers["x-request-id"] == "given-id-1"
        status, headers, _ = _get(f"{server.url}/orders/{order['order_no']}?token={token}")
        assert status == 200
        made_up = headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made_up), made_up
        # A request id that is not a plain token is replaced, as under gunicorn.
        _, headers, _ = _get(f"{server.url}/healthz?token=SECRET-IN-QUERY", {"X-Request-ID": "no spaces allowed"})
        assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])

        wait_until(lambda: made_up in server.log(), timeout=10, message="the access log line")
        log = server.log()
        assert token not in log and "SECRET-IN-QUERY" not in log, log[-3000:]
        lines = [json.loads(line) for line in log.splitlines() if '"cardshop.access"' in line]
        by_path = {line["message"].split('"')[1]: line for line in lines}
        api = by_path[f"GET /api/v1/orders/{order['order_no']} HTTP/1.1"]
        assert re.fullmatch(r'127\.0\.0\.1 "[^"]+" 200 \d+ \d+ms request_id=given-id-1', api["message"]), api
        assert api["request_id"] == "given-id-1"
        page = by_path[f"GET /orders/{order['order_no']} HTTP/1.1"]
        assert page["message"].endswith(f"request_id={made_up}") and page["request_id"] == made_up, page
        assert by_path["POST /api/v1/orders HTTP/1.1"]["message"].split('"')[2].startswith(" 202 "), by_path
        assert "GET /healthz HTTP/1.1" in by_path, by_path
        # Granian's own access log is off: no line of its format.
        assert not re.search(r'\] 127\.0\.0\.1 - "GET', log), log[-3000:]
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_sighup_replaces_the_workers_and_in_flight_requests_finish():
    server = GranianServer(workers=2, threads=4, args=("--respawn-interval", "0.5"), extra_env=SLOW_SETTINGS)
    try:
        server.start()
        old = _worker_pids(server)
        assert len(old) == 2, server.log_tail()
        slow_answers, health_answers, stop = [], [], threading.Event()

        def slow():
            try:
                slow_answers.append(_get(f"{server.url}/test/slow?seconds=3", timeout=30)[::2])
            except OSError as error:
                slow_answers.append(("error", repr(error)))

        def health():
            while not stop.is_set():
                try:
                    health_answers.append(_get(f"{server.url}/healthz", timeout=10)[0])
                except OSError as error:
                    health_answers.append(repr(error))
                time.sleep(0.05)

        slow_threads = [threading.Thread(target=slow) for _ in range(4)]
        for thread in slow_threads:
            thread.start()
        prober = threading.Thread(target=health)
        prober.start()
        time.sleep(1)  # the slow requests are running in the old workers
        os.kill(server.pid, signal.SIGHUP)
        for thread in slow_threads:
            thread.join()
        wait_until(
            lambda: not any(psutil.pid_exists(pid) for pid in old) and len(_worker_pids(server)) == 2,
            timeout=30,
            message="Granian to replace both workers",
        )
        stop.set()
        prober.join()
        assert slow_answers == [(200, b"slept 3.0")] * 4, slow_answers
        assert health_answers and set(health_answers) == {200}, health_answers
        assert "HUP signal received" in server.log()
        assert server.alive()
        assert _get(f"{server.url}/healthz")[0] == 200
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_request_still_running_at_the_graceful_timeout_is_cut():
    """gunicorn's --graceful-timeout: on SIGTERM a worker finishes its requests
    for that long, then is killed. (Neither server cuts a slow request while it
    keeps serving: gunicorn's gthread --timeout watches the worker, not a
    request; docs/benchmarks.md, "Web server comparison".)"""
    server = GranianServer(workers=1, threads=2, args=("--graceful-timeout", "2"), extra_env=SLOW_SETTINGS)
    try:
        server.start()
        answers = []

        def stuck():
            try:
                answers.append(_get(f"{server.url}/test/slow?seconds=60", timeout=90)[0])
            except OSError as error:
                answers.append(type(error).__name__)

        client = threading.Thread(target=stuck)
        client.start()
        time.sleep(1)
        stopped_at = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        server.popen.wait(timeout=20)
        took = time.monotonic() - stopped_at
        client.join(timeout=10)
        assert 1.5 <= took < 10, took
        assert answers and answers[0] != 200, answers
        assert "refused to gracefully stop" in server.log(), server.log_tail()
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_make_run_serves_with_granian_when_web_server_says_so():
    """scripts/run_all.sh (make run) with WEB_SERVER=granian: Granian answers,
    with the token-free access log, and the metrics directory of a previous
    run is emptied."""
    port = free_port()
    stale = ROOT / "var" / "metrics" / str(port) / "web" / "counter_4242.db"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"left over from a previous run")
    env = processes.test_environment(
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_SERVER="granian",
        WEB_WORKERS="1",
        WEB_THREADS="4",
        LOG_LEVEL="INFO",
        WORKER_METRICS_PORT=str(free_port()),
        SITE_URL=f"http://127.0.0.1:{port}",
    )
    run = ChildProcess("run-all", ["scripts/run_all.sh"], env=env).start()
    try:
        run.wait_for_log("cardshop is running", timeout=120)
        status, headers, _ = _get(f"http://127.0.0.1:{port}/healthz?token=SECRET-RUN-ALL", {"X-Request-ID": "run-1"})
        assert status == 200 and headers["server"] == "granian", headers
        run.wait_for_log("request_id=run-1", timeout=10)
        # One JSON line a request (its quotes escaped), as the app's other lines.
        assert r"\"GET /healthz HTTP/1.1\" 200" in run.log() and "SECRET-RUN-ALL" not in run.log()
        assert not stale.exists()
    finally:
        run.stop(timeout=30)
        shutil.rmtree(ROOT / "var" / "metrics" / str(port), ignore_errors=True)


def test_make_run_refuses_an_unknown_web_server():
    run = subprocess.run(
        ["scripts/run_all.sh"], cwd=ROOT, env={**os.environ, "WEB_SERVER": "uwsgi"}, capture_output=True, text=True
    )
    assert run.returncode == 2 and "WEB_SERVER=uwsgi: expected gunicorn or granian." in run.stderr, run


@pytest.mark.django_db(transaction=True)
def test_more_clients_than_threads_are_all_served_promptly():
    """Granian's backpressure bound near the thread count (--backpressure 4
    with 4 threads) leaves 16 clients connecting at once waiting until their
    30 s timeout (measured with this test); scripts/granian_serve.py keeps
    Granian's default (backlog ÷ workers)."""
    import aiohttp  # the load generator's client (requirements-bench.txt, installed by make test)

    server = GranianServer(workers=1, threads=4)

    async def crowd() -> list:
        connector = aiohttp.TCPConnector(limit=16)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=20)) as session:

            async def client():
                statuses = []
                for _ in range(2):
                    try:
                        async with session.get(f"{server.url}/healthz") as response:
                            await response.read()
                            statuses.append(response.status)
                    except (TimeoutError, aiohttp.ClientError) as error:
                        statuses.append(type(error).__name__)
                return statuses

            return [status for statuses in await asyncio.gather(*(client() for _ in range(16))) for status in statuses]

    try:
        server.start()
        started = time.monotonic()
        answered = asyncio.run(crowd())
        took = time.monotonic() - started
        assert answered == [200] * 32, answered
        assert took < 8, took
    finally:
        server.stop()
