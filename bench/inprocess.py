"""Costs measured inside one process, without HTTP or gunicorn: where the
figures of docs/benchmarks.md's profiler section come from.

    .venv/bin/python -m bench.inprocess wsgi    # CPU per request: /healthz, bare EVALSHA view, checkout (accepted, sold out)
    .venv/bin/python -m bench.inprocess drain   # one fulfilment drain of 2000 paid orders, under cProfile
    .venv/bin/python -m bench.inprocess poll    # CPU and queries per order-status poll: 200 from MariaDB vs 304 from Redis

Each run uses its own database and Redis key prefix (dropped afterwards), the
bench settings, and the real MariaDB and Redis. CPU times are the minimum over
repeated runs: this machine's neighbours add noise, never take it away."""

import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import BenchStack, StackConfig, bench_environment  # noqa: E402


def cpu_us_per_call(fn, *, calls: int = 1000, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - started) / calls)
    return round(best * 1e6, 1)


def wsgi_costs() -> dict:
    """CPU µs per request through Django's whole middleware stack."""
    from django.core.wsgi import get_wsgi_application

    from bench.bare import gate_copy_create
    from bench.scenario import product_with_keys

    product_id = product_with_keys(sku="INPROC-HOT", keys=20_000, per_buyer_limit=1)
    # One key, bought below: every later checkout is answered sold_out (the
    # flash sale's common answer: 3 of its 4 buyers).
    product_with_keys(sku="INPROC-SOLD", keys=1, per_buyer_limit=1)
    gate = gate_copy_create(product_id=product_id)
    app = get_wsgi_application()
    numbers = itertools.count()

    def call(method: str, path: str, body: dict | None = None) -> str:
        raw = json.dumps(body).encode() if body is not None else b""
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(raw),
            "CONTENT_LENGTH": str(len(raw)),
            "CONTENT_TYPE": "application/json",
        }
        answer = {}
        b"".join(app(environ, lambda status, headers, exc_info=None: answer.update(status=status)))
        return answer["status"]

    def checkout():
        body = {"sku": "INPROC-HOT", "quantity": 1, "email": f"inproc-{next(numbers)}@bench.example.com"}
        return call("POST", "/api/v1/orders", body)

    def checkout_sold_out():
        body = {"sku": "INPROC-SOLD", "quantity": 1, "email": f"inproc-{next(numbers)}@bench.example.com"}
        return call("POST", "/api/v1/orders", body)

    def bare():
        return call("POST", "/bench/bare-evalsha", {"gate": gate, "email": f"inproc-{next(numbers)}@bench.example.com"})

    for name, fn in (("healthz", lambda: call("GET", "/healthz")), ("bare", bare), ("checkout", checkout)):
        status = fn()
        if not status.startswith(("200", "202")):
            raise RuntimeError(f"{name} answered {status}")
    checkout_sold_out()  # the one key
    if not checkout_sold_out().startswith("409"):
        raise RuntimeError("the sold-out product still sells")
    return {
        "healthz_cpu_us": cpu_us_per_call(lambda: call("GET", "/healthz")),
        "bare_evalsha_cpu_us": cpu_us_per_call(bare),
        "checkout_cpu_us": cpu_us_per_call(checkout, calls=2000 // 5),
        "checkout_sold_out_cpu_us": cpu_us_per_call(checkout_sold_out, calls=400),
    }


def poll_costs() -> dict:
    """CPU µs and database queries per order-status poll through the whole
    middleware stack, for an order awaiting payment: a poll answered 200 from
    MariaDB (what every poll cost before the status record; it now also does
    one Redis read), and an unchanged order's conditional poll answered 304
    from the Redis record."""
    from django.core.wsgi import get_wsgi_application
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from apps.orders.services import checkout, persistence
    from apps.orders.status_records import order_status_etag
    from bench.scenario import product_with_keys

    product_with_keys(sku="INPROC-POLL", keys=10, per_buyer_limit=1)
    result = checkout.order_checkout(sku="INPROC-POLL", email="poll@bench.example.com", quantity=1)
    persistence.order_persist_queued()
    app = get_wsgi_application()
    etag = order_status_etag("awaiting_payment")

    def call(path: str, query: str, **headers) -> str:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_ACCEPT": "application/json",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
        }
        answer = {}
        b"".join(app(environ, lambda status, headers, exc_info=None: answer.update(status=status)))
        return answer["status"]

    page = (f"/orders/{result.order_no}/status", f"token={result.access_token}")
    api = (f"/api/v1/orders/{result.order_no}", "")
    token = {"x_order_token": result.access_token}
    polls = {
        "page_200_mariadb": lambda: call(*page),
        "page_304_redis": lambda: call(*page, if_none_match=etag),
        "api_200_mariadb": lambda: call(*api, **token),
        "api_304_redis": lambda: call(*api, if_none_match=etag, **token),
    }
    figures = {}
    for name, poll in polls.items():
        status = poll()  # the first 200 stores the record the 304s answer from
        expected = "304" if name.endswith("304_redis") else "200"
        if not status.startswith(expected):
            raise RuntimeError(f"{name} answered {status}")
        contexts = [CaptureQueriesContext(connections[alias]) for alias in connections]
        for context in contexts:
            context.__enter__()
        poll()
        for context in contexts:
            context.__exit__(None, None, None)
        figures[f"{name}_queries"] = sum(len(context.captured_queries) for context in contexts)
        figures[f"{name}_cpu_us"] = cpu_us_per_call(poll, calls=400)
    return figures


def drain_profile(*, orders: int = 2000, top: int = 25) -> dict:
    """One fulfilment drain of `orders` paid orders in this process, profiled;
    mail and Redis calls go to the real broker and gate (no worker runs, so
    the mail messages just wait)."""
    from apps.orders.models import Order
    from apps.orders.services import checkout, fulfilment, persistence
    from bench.scenario import product_with_keys

    product_with_keys(sku="INPROC-DRAIN", keys=orders, per_buyer_limit=1)
    for n in range(orders):
        checkout.order_checkout(sku="INPROC-DRAIN", email=f"drain-{n}@bench.example.com", quantity=1)
    persistence.order_persist_queued()
    Order.objects.update(status=Order.Status.PAID)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    report = fulfilment.fulfilment_run(order_id=None, seconds=300)
    profiler.disable()
    seconds = time.perf_counter() - started
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    return {
        "delivered": len(report.delivered),
        "seconds_under_profiler": round(seconds, 2),
        "keys_per_s_under_profiler": round(len(report.delivered) / seconds, 1),
        "profile": text.getvalue(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("wsgi", "drain", "poll"))
    parser.add_argument("--database", default="cardshop_bench_inprocess")
    parser.add_argument("--prefix", default="cardshop-bench-inprocess")
    args = parser.parse_args(argv)
    config = StackConfig(database=args.database, prefix=args.prefix, web_workers=1, web_threads=1, celery_concurrency=1)
    stack = BenchStack(config)
    os.environ.update(bench_environment(config, site_url=stack.url))
    try:
        stack.database_recreate()
        import django

        django.setup()
        result = {"wsgi": wsgi_costs, "drain": drain_profile, "poll": poll_costs}[args.what]()
    finally:
        stack.teardown()
    profile = result.pop("profile", "")
    print(json.dumps(result, indent=2))
    print(profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
