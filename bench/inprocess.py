"""Costs measured inside one process, without HTTP or gunicorn: where the
figures of docs/benchmarks.md's profiler section come from.

    .venv/bin/python -m bench.inprocess wsgi    # CPU per request: /healthz, bare EVALSHA view, checkout
    .venv/bin/python -m bench.inprocess drain   # one fulfilment drain of 2000 paid orders, under cProfile

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

    def bare():
        return call("POST", "/bench/bare-evalsha", {"gate": gate, "email": f"inproc-{next(numbers)}@bench.example.com"})

    for name, fn in (("healthz", lambda: call("GET", "/healthz")), ("bare", bare), ("checkout", checkout)):
        status = fn()
        if not status.startswith(("200", "202")):
            raise RuntimeError(f"{name} answered {status}")
    return {
        "healthz_cpu_us": cpu_us_per_call(lambda: call("GET", "/healthz")),
        "bare_evalsha_cpu_us": cpu_us_per_call(bare),
        "checkout_cpu_us": cpu_us_per_call(checkout, calls=2000 // 5),
    }


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
    parser.add_argument("what", choices=("wsgi", "drain"))
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
        result = wsgi_costs() if args.what == "wsgi" else drain_profile()
    finally:
        stack.teardown()
    profile = result.pop("profile", "")
    print(json.dumps(result, indent=2))
    print(profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
