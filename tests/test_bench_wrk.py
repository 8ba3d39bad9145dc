"""The benchmark's wrk runs (bench/wrk.py, bench/wrk/requests.lua) and the
scaling slope's arithmetic (bench/slope.py). The Lua script is tested with
real wrk over real sockets against a small HTTP server started here, which
records every request body."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.slope import cpu_plan, projection
from bench.wrk import WrkRequest, accepted_rate, buyer_body, wrk_run, wrk_summary


class RecordingServer(ThreadingHTTPServer):
    """Answers every POST 202 (every third 409 sold_out) and keeps its JSON body."""

    daemon_threads = True

    def __init__(self):
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), RecordingHandler)

    def handle_error(self, request, client_address):
        pass  # wrk closes its connections mid-request when its time is up


class RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
            number = len(self.server.bodies)
        status, answer = (409, {"error": "sold_out"}) if number % 3 == 0 else (202, {"order_no": str(number)})
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_server():
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def checkout(tag: str, cap: int) -> WrkRequest:
    return WrkRequest("/api/v1/orders", method="POST", body=buyer_body({"sku": "S", "quantity": 1}), tag=tag, cap=cap)


def test_wrk_sends_a_distinct_buyer_per_request_and_stops_at_its_cap(recording_server):
    url = f"http://127.0.0.1:{recording_server.server_port}"
    run = wrk_run(url=url, request=checkout("cap", 60), seconds=5, connections=8, threads=2)
    emails = [body["email"] for body in recording_server.bodies]
    assert len(emails) == 60 == run["sent"], run
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"cap-[01]-\d+@bench\.example\.com", email) for email in emails), emails[:5]
    assert {body["sku"] for body in recording_server.bodies} == {"S"}
    # Both threads took their half of the cap; every answer was read back, by status and error code.
    assert sorted({email.split("-")[1] for email in emails}) == ["0", "1"]
    assert run["answers"] == {"202": 40, "409 sold_out": 20}, run
    assert run["requests"] == 60 and run["cpu_seconds"] > 0
    assert 0 < run["latency_ms"]["p50"] <= run["latency_ms"]["p99"] <= run["latency_ms"]["max"]
    assert accepted_rate(run, status="202") == pytest.approx(40 / run["seconds"])


def test_wrk_without_a_cap_keeps_buyers_distinct_across_threads_and_runs(recording_server):
    url = f"http://127.0.0.1:{recording_server.server_port}"
    first = wrk_run(url=url, request=checkout("one", 0), seconds=1, connections=4, threads=2)
    second = wrk_run(url=url, request=checkout("two", 0), seconds=1, connections=4, threads=2)
    emails = [body["email"] for body in recording_server.bodies]
    assert len(emails) == first["sent"] + second["sent"] > 0
    assert len(set(emails)) == len(emails)
    # wrk stops at its duration: requests still unanswered then are sent but not counted.
    assert first["requests"] <= first["sent"] and 0.5 < first["seconds"] < 3


def test_wrk_summary_reads_the_lua_line_and_counts_socket_errors_as_status_0():
    line = {
        "requests": 7,
        "duration_us": 2_000_000,
        "errors": {"connect": 0, "read": 1, "write": 0, "status": 2, "timeout": 3},
        "latency_us": {"p50": 1500, "p95": 20000, "p99": 30000, "max": 31000, "mean": 5000.5},
        "threads": [
            {"sent": 5, "answered": 4, "first_sent": 10.0, "last_answer": 11.2, "answers": {"202": 3, "409 x": 1}},
            {"sent": 3, "answered": 3, "first_sent": 10.1, "last_answer": 11.5, "answers": {"202": 3}},
        ],
    }
    stdout = "Running 2s test @ http://127.0.0.1:1/\n  1 threads\nWRK_RESULT " + json.dumps(line) + "\n"
    summary = wrk_summary(stdout)
    assert summary == {
        "requests": 7,
        "sent": 8,
        # First request sent (10.0) to last answer (11.5), over both threads.
        "seconds": 1.5,
        "answers": {"202": 6, "409 x": 1, "0 read": 1, "0 timeout": 3},
        "latency_ms": {"p50": 1.5, "p95": 20.0, "p99": 30.0, "max": 31.0, "mean": 5.0},
    }
    assert accepted_rate(summary, status="202") == 4.0
    with pytest.raises(RuntimeError, match="no result line"):
        wrk_summary("Running 1s test\n")


def test_cpu_plan_keeps_the_load_generator_apart_where_the_machine_allows():
    two = [0, 1]
    assert cpu_plan(cores=1, available=two).__dict__ == {"server": "1", "loadgen": "0", "apart": True}
    assert cpu_plan(cores=2, available=two).__dict__ == {"server": "0,1", "loadgen": "0", "apart": False}
    sixteen = list(range(16))
    assert cpu_plan(cores=2, available=sixteen).__dict__ == {"server": "14,15", "loadgen": "0,1", "apart": True}


def test_projection_keeps_the_efficiency_per_doubling_and_is_capped_by_redis():
    result = projection(ours_2=1000.0, naive_2=100.0, ours_slope=1.8, redis_evalsha_rps=5000.0)
    eight, sixteen = result["cores"]["8"], result["cores"]["16"]
    assert eight == {  # 1000 · 1.8² (8 = two doublings of 2)
        "ours_orders_per_s": 3240.0,
        "naive_orders_per_s": 100.0,
        "design_ratio": 32.4,
        "capped_by": "",
    }
    # 1000 · 1.8³ = 5832 is more than one Redis answers: the cap.
    assert sixteen["ours_orders_per_s"] == 5000.0 and sixteen["capped_by"] == "redis_headroom"
    assert "projection" in result["label"]


def test_slope_summary_pairs_rounds_and_the_report_shows_the_projection_as_one():
    from bench.report import _slope_table
    from bench.slope import slope_summary

    def design(ours, naive):
        latency = {"p50": 10.0, "p95": 20.0, "p99": 30.0, "max": 40.0, "mean": 12.0}
        return {
            "ours_orders_per_s": ours,
            "naive_orders_per_s": naive,
            "ours_latency_ms": latency,
            "naive_latency_ms": latency,
            "ours_answers": {"202": int(ours)},
            "naive_answers": {"202": int(naive)},
            "naive_errors": {"lock_wait_timeout": 0, "deadlock": 0, "other": 0},
        }

    cpu = {"loadgen": 9.0, "web": 95.0, "workers": 20.0, "machine_busy": 80.0}
    measured = {
        # Round 2 ran on a busier machine: both core counts slower, the pairing keeps the slope.
        1: {"design": [design(400, 100), design(200, 50)], "cpu": [cpu, cpu], "seconds": []},
        2: {"design": [design(720, 105), design(360, 55)], "cpu": [cpu, cpu], "seconds": []},
    }
    plans = {cores: cpu_plan(cores=cores, available=[0, 1]) for cores in (1, 2)}
    slope = slope_summary(measured, plans=plans, rounds=2, seconds=4, connections=200, redis_evalsha_rps=20_000.0)
    assert slope["ours_slope"] == 1.8
    assert slope["naive_slope"] == pytest.approx(1.075, abs=0.01)
    assert slope["design_ratio_2_cores"] == pytest.approx((720 / 105 + 360 / 55) / 2, abs=0.01)
    assert slope["ours_orders_per_s"] == {"1": 300.0, "2": 540.0}
    assert slope["cpus"]["2"] == {"server": "0,1", "load_generator": "0", "apart": False}
    table = "\n".join(_slope_table(slope))
    assert "| 8, *projected* |" in table and "a model, not a measurement" in table
    assert "shares CPU with the server" in table
    assert _slope_table({"skipped": "quick run"}) == ["## Scaling slope: skipped (quick run)", ""]
