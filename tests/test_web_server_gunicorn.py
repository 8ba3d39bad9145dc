"""The shop under a real gunicorn with gunicorn.conf.py, the default web
server (docs/benchmarks.md, "Web server comparison"), as the image and
`make run` start it (sync workers): the access log names the path and the
request id but never a token, SIGHUP replaces the workers while in-flight
requests finish, a request still running after the graceful timeout is cut
on stop, and one running past --timeout is cut while the server goes on.
(Metrics across workers: apps/monitoring/tests/test_processes.py; the same
points under Granian: tests/test_web_server_granian.py.)"""

import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest

from apps.orders.tests.processes import GunicornServer
from apps.orders.tests.support import product_with_keys
from testing.processes import wait_until

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


def _worker_pids(server: GunicornServer) -> set[int]:
    """The workers gunicorn says it booted and that still run."""
    booted = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", server.log())}
    return {pid for pid in booted if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"}


@pytest.mark.django_db(transaction=True)
def test_the_access_log_names_path_and_request_id_but_never_a_token():
    product = product_with_keys(keys=2, per_buyer_limit=1)
    server = GunicornServer(workers=1, sync=True, args=("--access-logfile", "-"))
    try:
        server.start()
        order = _checkout(server.url, product.sku, "log@example.com")
        token = order["access_token"]
        assert len(token) >= 16
        status, headers, _ = _get(
            f"{server.url}/api/v1/orders/{order['order_no']}?token={token}", {"X-Request-ID": "given-id-1"}
        )
        assert status == 200
        assert headers["X-Request-ID"] == "given-id-1"
        status, headers, _ = _get(f"{server.url}/orders/{order['order_no']}?token={token}")
        assert status == 200
        made_up = headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", made_up), made_up
        # A request id that is not a plain token is replaced.
        _, headers, _ = _get(f"{server.url}/healthz?token=SECRET-IN-QUERY", {"X-Request-ID": "no spaces allowed"})
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])

        wait_until(lambda: made_up in server.log(), timeout=10, message="the access log line")
        log = server.log()
        assert token not in log and "SECRET-IN-QUERY" not in log, log[-3000:]
        api = f'127.0.0.1 "GET /api/v1/orders/{order["order_no"]} HTTP/1.1" 200 '
        assert re.search(re.escape(api) + r"\d+ \d+ms request_id=given-id-1", log), log[-3000:]
        page = f'"GET /orders/{order["order_no"]} HTTP/1.1" 200 '
        assert re.search(re.escape(page) + rf"\d+ \d+ms request_id={made_up}", log), log[-3000:]
        assert re.search(r'"POST /api/v1/orders HTTP/1.1" 202 ', log), log[-3000:]
        assert '"GET /healthz HTTP/1.1" 200 ' in log, log[-3000:]
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_sighup_replaces_the_workers_and_in_flight_requests_finish():
    server = GunicornServer(workers=3, sync=True, extra_env=SLOW_SETTINGS)
    try:
        server.start()
        wait_until(lambda: len(_worker_pids(server)) == 3, timeout=10, message="three workers")
        old = _worker_pids(server)
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

        slow_threads = [threading.Thread(target=slow) for _ in range(2)]
        for thread in slow_threads:
            thread.start()
        prober = threading.Thread(target=health)
        prober.start()
        time.sleep(1)  # the slow requests are running in two of the old workers
        os.kill(server.pid, signal.SIGHUP)
        for thread in slow_threads:
            thread.join()
        wait_until(
            lambda: not any(psutil.pid_exists(pid) for pid in old) and len(_worker_pids(server)) == 3,
            timeout=30,
            message="gunicorn to replace the three workers",
        )
        stop.set()
        prober.join()
        assert slow_answers == [(200, b"slept 3.0")] * 2, slow_answers
        assert health_answers and set(health_answers) == {200}, health_answers
        assert "Handling signal: hup" in server.log(), server.log_tail()
        assert server.alive()
        assert _get(f"{server.url}/healthz")[0] == 200
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_request_still_running_at_the_graceful_timeout_is_cut():
    server = GunicornServer(workers=1, sync=True, args=("--graceful-timeout", "2"), extra_env=SLOW_SETTINGS)
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
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_request_running_past_the_timeout_is_cut_and_the_server_goes_on():
    """Sync workers: the master kills a worker silent for --timeout seconds,
    which cuts its request, and boots another (gthread workers report while
    their threads serve, so there it is the app's own timeouts that bound a
    request: docs/benchmarks.md)."""
    server = GunicornServer(workers=1, sync=True, args=("--timeout", "2"), extra_env=SLOW_SETTINGS)
    try:
        server.start()
        started = time.monotonic()
        try:
            answer = _get(f"{server.url}/test/slow?seconds=30", timeout=40)[0]
        except OSError as error:
            answer = type(error).__name__
        took = time.monotonic() - started
        assert answer != 200 and took < 20, (answer, took)
        wait_until(lambda: "WORKER TIMEOUT" in server.log(), timeout=10, message="the timeout in the log")
        assert server.alive()
        wait_until(lambda: _get(f"{server.url}/healthz")[0] == 200, timeout=20, message="a new worker serving")
    finally:
        server.stop()
