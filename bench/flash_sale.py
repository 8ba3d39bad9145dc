"""The flash-sale benchmark: `make bench` (a few minutes) or `make bench-quick`
(under a minute).

    .venv/bin/python -m bench.flash_sale [--quick] [--web-workers 2] [--web-threads 16] [--profile]
        [--web-server gunicorn|gunicorn-sync|granian] [--servers gunicorn,gunicorn-sync,granian]

Starts the web server (gunicorn unless --web-server or WEB_SERVER says
otherwise), a Celery worker and beat on their own database and Redis key
prefix, measures the ceiling, design and drain ratios, Redis headroom and a
whole flash sale (checkout → pay → delivery), checks the correctness gates;
with --servers, measures checkout and /healthz under each web server in turn
(the server comparison); and writes bench/results/latest.{json,md} and PNG charts. Exits 1 when a
correctness gate fails (never on a timing)."""

import argparse
import asyncio
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import BenchStack, StackConfig, WebServer, bench_environment  # noqa: E402
from bench.sustained import SUSTAINED_QUICK, SUSTAINED_SMOKE, SustainedPlan  # noqa: E402
from testing.processes import web_server_default  # noqa: E402
from testing.redis_server import GATE_REDIS_CONF, RedisServer  # noqa: E402

# Overrides of deploy/redis/redis.conf for --gate-redis.
GATE_SETTINGS = {"always": (), "everysec": ("--appendfsync", "everysec"), "off": ("--appendonly", "no")}


@dataclass(frozen=True)
class Plan:
    rounds_ceiling: int
    rounds_design: int
    round_seconds: float
    ceiling_concurrency: int
    design_concurrency: int
    checkout_cap: int  # requests per round of our checkout (its keys are imported)
    naive_cap: int
    drain_orders: int
    drain_single_orders: int
    headroom_requests: int
    flash_keys: int
    flash_buyers: int
    flash_poll_seconds: float
    flash_seconds: float
    # Checkouts of the steady persistence-lag phase (one at a time, 20 a second).
    lag_orders: int = 100
    # The scaling slope (bench/slope.py): rounds of a 1-core and a 2-core run
    # of the design phase, each side `slope_seconds`; 0 rounds: skipped.
    rounds_slope: int = 0
    slope_seconds: float = 4.0
    # Sustained end to end (bench/sustained.py): its window, rate and grace.
    sustained: SustainedPlan = SustainedPlan()
    # The volume phase's history (bench/volume.py): orders and keys filled
    # into a second stack's database; then `volume_rounds` paired rounds of
    # ceiling and drain on empty and full tables, the first
    # `volume_flash_rounds` of them with a flash sale a side (bench/volume_paired.py).
    volume_orders: int = 2_000_000
    volume_keys: int = 5_000_000
    volume_rounds: int = 6
    volume_flash_rounds: int = 2


# The quick run (under a minute: one round a side, a smaller crowd, a 2 s
# sustained window) skips the one-order-per-transaction drain (a worker
# restart), the scaling slope (eight web server restarts), the volume and
# the durable gate's cost.
QUICK = Plan(1, 1, 1.0, 64, 200, 4000, 300, 400, 0, 5_000, 100, 300, 1.0, 25, lag_orders=10, sustained=SUSTAINED_QUICK)
FULL = Plan(
    5,
    4,
    5.0,
    64,
    200,
    8000,
    1000,
    6000,
    1000,
    200_000,
    1000,
    4000,
    2.0,
    120,
    rounds_slope=4,
    sustained=SustainedPlan(search_steps=3),
)
SMOKE = Plan(1, 1, 1.0, 16, 50, 1000, 100, 200, 0, 5_000, 60, 150, 0.5, 20, lag_orders=20, sustained=SUSTAINED_SMOKE)
# With --volume, the small plans pair two rounds, one with a flash sale a side.
QUICK, SMOKE = (dataclasses.replace(plan, volume_rounds=2, volume_flash_rounds=1) for plan in (QUICK, SMOKE))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the under-a-minute run")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite: correctness gates only")
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("BENCH_WEB_WORKERS", 2)))
    parser.add_argument("--web-threads", type=int, default=int(os.environ.get("BENCH_WEB_THREADS", 16)))
    parser.add_argument(
        "--web-server",
        default=web_server_default(),
        choices=["gunicorn", "gunicorn-sync", "granian"],
        help="the server of the main phases (default: WEB_SERVER, else gunicorn)",
    )
    parser.add_argument(
        "--servers",
        default=os.environ.get("BENCH_SERVERS", ""),
        help="comma-separated servers to compare, each name[:WORKERS[xTHREADS]], e.g. "
        "gunicorn,gunicorn-sync:5,granian:2x16 (sizes default to --web-workers × --web-threads; "
        "gunicorn-sync to 2 × cores + 1 processes)",
    )
    parser.add_argument("--celery-concurrency", type=int, default=int(os.environ.get("BENCH_CELERY_CONCURRENCY", 2)))
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE_NAME", "cardshop_bench"))
    parser.add_argument("--prefix", default=os.environ.get("BENCH_REDIS_KEY_PREFIX", "cardshop-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--profile", action="store_true", help="also profile gunicorn under checkout load with py-spy")
    # Issue 15: the phases again on full tables, and the durable gate's cost on checkout.
    parser.add_argument(
        "--volume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ceiling, drain and flash on empty tables and on a second database filled with history, in paired "
        "rounds (bench/volume_paired.py; default: on in the full run)",
    )
    parser.add_argument("--volume-orders", type=int, default=None, help="historic orders (default 2,000,000)")
    parser.add_argument("--volume-keys", type=int, default=None, help="keys in all (default 5,000,000)")
    parser.add_argument(
        "--gate-cost",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="checkout on a gate as prescribed (appendfsync always) vs without AOF (default: on in the full run)",
    )
    parser.add_argument(
        "--gate-redis",
        choices=["shared", *GATE_SETTINGS],
        default="shared",
        help="the local Redis (default), or a private one from deploy/redis/redis.conf: as prescribed "
        "(always), AOF fsynced each second (everysec) or no persistence (off)",
    )
    parser.add_argument(
        "--sustained-rate",
        type=float,
        default=None,
        help="arrivals/s of the sustained end-to-end phase (default: half the checkout ceiling measured in the run)",
    )
    parser.add_argument(
        "--sustained-seconds", type=float, default=None, help="its arrival window (default: the plan's)"
    )
    parser.add_argument(
        "--sustained-search",
        type=int,
        default=None,
        help="runs, each at half the rate of the one before, searching the rate sustained end to end "
        "(default: 3 in the full run, none in the quick one)",
    )
    args = parser.parse_args(argv)
    plan, mode = (SMOKE, "smoke") if args.smoke else (QUICK, "quick") if args.quick else (FULL, "full")
    if args.sustained_rate is not None:
        plan = dataclasses.replace(plan, sustained=dataclasses.replace(plan.sustained, rate=args.sustained_rate))
    if args.sustained_seconds is not None:
        plan = dataclasses.replace(plan, sustained=dataclasses.replace(plan.sustained, seconds=args.sustained_seconds))
    if args.sustained_search is not None:
        plan = dataclasses.replace(
            plan, sustained=dataclasses.replace(plan.sustained, search_steps=args.sustained_search)
        )
    volume = mode == "full" if args.volume is None else args.volume
    gate_cost = mode == "full" if args.gate_cost is None else args.gate_cost
    plan = dataclasses.replace(
        plan,
        volume_orders=args.volume_orders or plan.volume_orders,
        volume_keys=args.volume_keys or plan.volume_keys,
    )
    servers = [
        WebServer.parse(text, workers=args.web_workers, threads=args.web_threads)
        for text in args.servers.split(",")
        if text.strip()
    ]

    gate = None
    if args.gate_redis != "shared":
        gate = RedisServer(
            config=GATE_REDIS_CONF, overrides=GATE_SETTINGS[args.gate_redis], name="bench-gate-redis"
        ).start()
    config = StackConfig.from_args(args, extra_env={"REDIS_URL": gate.url, "GATE_REDIS_URL": gate.url} if gate else {})
    stack = BenchStack(config)
    os.environ.update(bench_environment(config, site_url=stack.url))
    began = time.monotonic()
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    try:
        # A run killed before its teardown leaves its prefix's keys behind; the
        # product ids of the new database start over, so old per-buyer limits
        # would refuse this run's buyers (409).
        stack.redis_clear()
        stack.database_recreate()
        import django

        django.setup()
        stack.broker_prepare()  # on RabbitMQ (BENCH_CELERY_BROKER_URL): the run's virtual host and empty queues
        result = run(
            stack,
            plan,
            mode=mode,
            profile=args.profile,
            out=args.out,
            servers=servers,
            volume=volume,
            gate_cost=gate_cost,
        )
    finally:
        stack.teardown()
        if gate:
            gate.remove()
    result["gate_redis"] = args.gate_redis
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_before": loadavg_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    result["config"] = {
        "web_workers": config.web_workers,
        "web_threads": config.web_threads,
        "web_server": config.web_server,
        "celery_concurrency": config.celery_concurrency,
        "checkout_rate_per_second": config.checkout_rate,
        "plan": dataclasses.asdict(plan),
    }
    result["seconds"] = round(time.monotonic() - began, 1)
    result["revision"] = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    from bench.report import write

    write(result, out=args.out)
    print((args.out / "latest.md").read_text())
    failed = [g for g in ("oversold", "duplicates", "paid_undelivered") if result[g]]
    if not result["flash"]["gates"]["sold_equals_min_keys_demand"]:
        failed.append("sold != min(K, demand)")
    sustained_gates = result["sustained"]["gates"]
    failed += [f"sustained {g}" for g in ("oversold", "duplicates", "paid_undelivered") if sustained_gates[g]]
    # Its product has more keys than buyers, so "oversold" only sees a
    # negative stock: a key sold without an accepted order, or a 202 whose
    # order never reached MariaDB, is caught here.
    if sustained_gates["sold"] > sustained_gates["accepted"]:
        failed.append("sustained sold > accepted")
    if sustained_gates["answered_never_recorded"]:
        failed.append("sustained 202 never recorded")
    for step in result["sustained"].get("search", {}).get("steps", []):
        rate, step_gates = step["rate_per_s"], step["gates"]
        failed += [
            f"sustained at {rate}/s {g}" for g in ("oversold", "duplicates", "paid_undelivered") if step_gates[g]
        ]
        if step_gates["sold"] > step_gates["accepted"] or step_gates["answered_never_recorded"]:
            failed.append(f"sustained at {rate}/s: sold > accepted or a 202 never recorded")
    if result.get("volume"):
        volume_gates = result["volume"]["flash_gates"]
        failed += [f"volume {g}" for g in ("oversold", "duplicates", "paid_undelivered") if volume_gates[g]]
        if not volume_gates["sold_equals_min_keys_demand"]:
            failed.append("volume sold != min(K, demand)")
    if failed:
        print("CORRECTNESS GATES FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


def run(
    stack: BenchStack,
    plan: Plan,
    *,
    mode: str,
    profile: bool,
    out: Path,
    servers: list[WebServer],
    volume: bool = False,
    gate_cost: bool = False,
) -> dict:
    from bench import phases
    from bench.naive import naive_stock_table_create
    from bench.profile import profile_under_load
    from bench.report import charts
    from bench.scenario import product_with_keys
    from bench.slope import available_cpus, cpu_plan, slope
    from bench.wrk import wrk_cpu_seconds

    # Each slope run: a warm-up (two checkouts a connection), then at most a
    # cap of each side; two runs (1 and 2 cores) a round.
    slope_runs = 2 * plan.rounds_slope
    hot_keys = (
        (plan.rounds_ceiling + plan.rounds_design + profile) * plan.checkout_cap
        + 2 * plan.ceiling_concurrency  # the warm-up before the ceiling
        + slope_runs * (plan.checkout_cap + 2 * plan.design_concurrency)
    )
    naive_keys = (plan.rounds_design + slope_runs) * plan.naive_cap
    # The phases that do not pin the server (it has every CPU) pin wrk where
    # the slope's 2-core run does: the first CPU, shared with the server.
    cpus = available_cpus()
    loadgen_cpus = cpu_plan(cores=len(cpus), available=cpus).loadgen
    timings = {}
    clock = time.monotonic()

    def lap(name):
        nonlocal clock
        timings[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    hot = product_with_keys(sku="BENCH-HOT", keys=hot_keys, per_buyer_limit=1)
    naive = product_with_keys(sku="BENCH-NAIVE", keys=naive_keys, per_buyer_limit=1)
    naive_stock_table_create(product_id=naive, stock=naive_keys)
    flash = product_with_keys(sku="BENCH-FLASH", keys=plan.flash_keys, per_buyer_limit=1)
    product_with_keys(sku="BENCH-LAG", keys=plan.lag_orders, per_buyer_limit=1)
    # Checkout only (the ceiling's checkout side), both sides' rounds, warm-ups
    # included, twice over: reconciliation may count one side's orders against the other's gate.
    gated = (
        product_with_keys(
            sku="BENCH-GATE",
            keys=4 * plan.rounds_ceiling * (plan.checkout_cap + 2 * plan.ceiling_concurrency),
            per_buyer_limit=1,
        )
        if gate_cost
        else None
    )
    compared = (
        product_with_keys(
            sku="BENCH-SERVERS",
            keys=plan.rounds_ceiling * len(servers) * (plan.checkout_cap + 2 * plan.ceiling_concurrency),
            per_buyer_limit=1,
        )
        if servers
        else None
    )

    lap("setup_data")
    stack.web_start()
    stack.worker_start()
    stack.beat_start()
    lap("start_processes")

    def meter():
        # The load generator: this process (the flash sale's asyncio buyers)
        # and the wrk runs it reaped (the throughput phases).
        return phases.CpuMeter(
            {"loadgen": lambda: [os.getpid()], "web": stack.server_pids, "workers": stack.worker_pids},
            counters={"loadgen": wrk_cpu_seconds},
        )

    ceiling = ceiling_measure(stack, plan, sku="BENCH-HOT", product_id=hot, meter=meter, cpus=loadgen_cpus)
    lap("ceiling")
    with meter() as cpu:
        design = phases.design(
            url=stack.url,
            sku="BENCH-HOT",
            naive_sku="BENCH-NAIVE",
            rounds=plan.rounds_design,
            duration=plan.round_seconds,
            concurrency=plan.design_concurrency,
            counts={"ours": plan.checkout_cap, "naive": plan.naive_cap},
            cpus=loadgen_cpus,
        )
    design["cpu"] = cpu.percent
    lap("design")
    profile_top = (
        profile_under_load(
            stack,
            sku="BENCH-HOT",
            seconds=plan.round_seconds,
            concurrency=plan.ceiling_concurrency,
            count=plan.checkout_cap,
            out=out,
        )
        if profile
        else None
    )
    lap("profile")

    drain = {"batched": drain_measure(plan, product_id=hot, lap=lap)}
    redis = phases.redis_headroom(product_id=hot, requests=plan.headroom_requests)
    lap("redis_headroom")
    phases.broker_idle_wait(timeout=60)
    lap("mail_backlog")

    flash_result, sale, gates = flash_measure(
        stack.url, plan, sku="BENCH-FLASH", product_id=flash, meter=meter, lap=lap
    )
    lap("flash_gates")
    steady = phases.persist_lag_steady(url=stack.url, sku="BENCH-LAG", count=plan.lag_orders, per_second=20)
    flash_result["persist_lag_steady_ms"] = latency_ms_from_seconds(steady["lag_s"])
    flash_result["persist_lag_steady_never_recorded"] = steady["never_recorded"]
    lap("persist_lag")

    # Sustained end to end: a fixed arrival rate of paying buyers (bench/sustained.py).
    from bench import sustained
    from bench.report import sustained_chart

    sustained_result, sustained_phase = sustained.measure(
        stack, plan.sustained, checkout_rps=ceiling["checkout_rps"], concurrency=plan.design_concurrency, meter=meter
    )
    lap("sustained")

    if plan.drain_single_orders:
        phases.broker_idle_wait(timeout=60)
        stack.worker_restart(FULFIL_BATCH_SIZE="1")
        drain["single"] = phases.drain(product_id=hot, count=plan.drain_single_orders, timeout=120)
        lap("drain_single")
    else:
        drain["single"] = {"keys_per_s": 0.0, "skipped": "quick run"}
    # After the one-order-per-transaction drain (the design phase's orders
    # it drains expire 15 minutes after they were placed), on the worker as
    # the sustained phase had it.
    if sustained.search_wanted(plan.sustained, sustained_result):
        stack.worker_restart()
        sustained_result["search"] = sustained.sustainable_rate_search(
            stack,
            plan.sustained,
            first_rate=sustained_result["arrival_rate_per_s"] / 2,
            checkout_rps=ceiling["checkout_rps"],
            concurrency=plan.design_concurrency,
            meter=meter,
        )
        lap("sustained_search")
    server_comparison = (
        servers_compare(
            stack, plan, servers=servers, sku="BENCH-SERVERS", product_id=compared, meter=meter, cpus=loadgen_cpus
        )
        if servers
        else None
    )
    lap("servers")
    if gate_cost:
        from bench.gate_cost import gate_checkout_cost

        gate_cost_result = gate_checkout_cost(
            stack, plan, sku="BENCH-GATE", product_id=gated, meter=meter, cpus=loadgen_cpus
        )
    else:
        gate_cost_result = None
    lap("gate_cost")
    if volume:
        from bench.volume_paired import volume_compare

        volume_result = volume_compare(stack, plan, lap=lap, cpus=loadgen_cpus)
    else:
        volume_result = None
    # Last: it leaves the server pinned (teardown stops it). It starts once
    # the phases before it (the volume run's flash sale) are off the workers.
    phases.persisted_wait(product_id=hot, timeout=120)
    phases.broker_idle_wait(timeout=120)
    scaling = (
        slope(
            stack,
            hot_sku="BENCH-HOT",
            hot_product_id=hot,
            naive_sku="BENCH-NAIVE",
            rounds=plan.rounds_slope,
            seconds=plan.slope_seconds,
            connections=plan.design_concurrency,
            caps={"ours": plan.checkout_cap, "naive": plan.naive_cap},
            redis_evalsha_rps=redis["evalsha_rps"],
            meter=meter,
        )
        if plan.rounds_slope
        else {"skipped": f"{mode} run"}
    )
    lap("slope")
    chart_names = charts(sale=sale, gates=gates, ceiling=ceiling, design=design, slope=scaling, out=out)
    chart_names += sustained_chart(phase=sustained_phase, figures=sustained_result, out=out)

    checkout_rps = ceiling["checkout_rps"]
    return {
        "mode": mode,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "ceiling_ratio": ceiling["ceiling_ratio"],
        "bare_evalsha_ratio": ceiling["bare_ratio"],
        # The design phase on the unpinned server: reported; its target is
        # now the scaling slope's (2-core design ratio, slopes).
        "design_ratio": design["design_ratio"],
        "slope_ours": scaling.get("ours_slope"),
        "slope_naive": scaling.get("naive_slope"),
        "design_ratio_2_cores": scaling.get("design_ratio_2_cores"),
        "design_ratio_end_to_end": round(flash_result["delivered_per_s"] / design["naive_orders_per_s"], 2)
        if design["naive_orders_per_s"]
        else 0.0,
        "drain_ratio": round(drain["batched"]["keys_per_s"] / checkout_rps, 2) if checkout_rps else 0.0,
        "drain_ratio_single": round(drain["single"]["keys_per_s"] / checkout_rps, 2) if checkout_rps else 0.0,
        "redis_headroom": round(redis["evalsha_rps"] / checkout_rps, 1) if checkout_rps else 0.0,
        "checkout_rps": checkout_rps,
        "checkout_p50_ms": ceiling["checkout_latency_ms"]["p50"],
        "checkout_p95_ms": ceiling["checkout_latency_ms"]["p95"],
        "checkout_p99_ms": ceiling["checkout_latency_ms"]["p99"],
        "paid_to_delivered_p50_ms": flash_result["paid_to_delivered_ms"]["p50"],
        "paid_to_delivered_p95_ms": flash_result["paid_to_delivered_ms"]["p95"],
        "paid_to_delivered_p99_ms": flash_result["paid_to_delivered_ms"]["p99"],
        "persist_lag_p50_ms": flash_result["persist_lag_steady_ms"]["p50"],
        "persist_lag_p99_ms": flash_result["persist_lag_steady_ms"]["p99"],
        "oversold": gates["oversold"],
        "duplicates": gates["duplicates"],
        "paid_undelivered": gates["paid_undelivered"],
        "ceiling": ceiling,
        "design": design,
        "slope": scaling,
        "drain": drain,
        "redis": redis,
        "flash": flash_result,
        "charts": chart_names,
        "profile": profile_top,
        "servers": server_comparison,
        "sustained": sustained_result,
        "gate_cost": gate_cost_result,
        "volume": volume_result,
        "phase_seconds": timings,
    }


def ceiling_measure(stack: BenchStack, plan: Plan, *, sku: str, product_id: int, meter, cpus: str) -> dict:
    """The ceiling phase on a product of its own (bench.phases.ceiling, wrk
    pinned to `cpus`) after a warm-up, with the CPU it used."""
    from bench import phases
    from bench.bare import gate_copy_create

    gate_copy = gate_copy_create(product_id=product_id)
    phases.warm_up(url=stack.url, sku=sku, tag=f"warm-{sku}", connections=plan.ceiling_concurrency, cpus=cpus)
    with meter() as cpu:
        ceiling = phases.ceiling(
            url=stack.url,
            sku=sku,
            gate_copy=gate_copy,
            rounds=plan.rounds_ceiling,
            duration=plan.round_seconds,
            concurrency=plan.ceiling_concurrency,
            count=plan.checkout_cap,
            cpus=cpus,
        )
    ceiling["cpu"] = cpu.percent
    return ceiling


def drain_measure(plan: Plan, *, product_id: int, lap) -> dict:
    """The batched drain of the product's orders, once its queued
    reservations are orders and the workers are idle."""
    from bench import phases

    phases.persisted_wait(product_id=product_id, timeout=120)
    phases.broker_idle_wait(timeout=60)
    lap("persist_backlog")
    drain = phases.drain(product_id=product_id, count=plan.drain_orders, timeout=120)
    lap("drain_batched")
    return drain


def flash_measure(url: str, plan: Plan, *, sku: str, product_id: int, meter, lap) -> tuple[dict, dict, dict]:
    """The whole flash sale on a product of its own, and its gates: (its
    figures, the buyers' raw record, the gates' raw record)."""
    from bench import phases

    with meter() as cpu:
        sale = asyncio.run(
            phases.flash_sale(
                url=url,
                sku=sku,
                product_id=product_id,
                buyers=plan.flash_buyers,
                concurrency=plan.design_concurrency,
                poll_seconds=plan.flash_poll_seconds,
                duration=plan.flash_seconds,
            )
        )
    lap("flash_sale")
    gates = phases.flash_gates(
        product_id=product_id, keys=plan.flash_keys, buyers=plan.flash_buyers, sale=sale, settle_timeout=30
    )
    return flash_summary(plan=plan, sale=sale, gates=gates, cpu=cpu.percent), sale, gates


def servers_compare(
    stack: BenchStack, plan: Plan, *, servers: list[WebServer], sku: str, product_id: int, meter, cpus: str
):
    """Checkout and /healthz (the ceiling phase's two sides, sent by wrk on
    `cpus`) under each server in turn, same app, same database and workers:
    `rounds_ceiling` rounds, each server restarted for its round, the order
    reversed every round so a neighbour's load falls on all alike. Between two
    servers the Celery backlog of the last one's checkouts is persisted first."""

    from bench import phases

    runs = {
        server.label: {"server": server, "checkout": [], "healthz": [], "runs": [], "cpu": [], "seconds": []}
        for server in servers
    }
    for r in range(plan.rounds_ceiling):
        numbered = list(enumerate(servers))
        for index, server in numbered if r % 2 == 0 else reversed(numbered):
            tag = f"srv{r}-{index}"  # distinct buyers: one order each
            clock = time.monotonic()
            stack.web_restart(server)
            restarted = time.monotonic()
            phases.warm_up(
                url=stack.url, sku=sku, tag=f"warm{r}-{index}", connections=plan.ceiling_concurrency, cpus=cpus
            )
            with meter() as cpu:
                side = phases.wrk_paired_rounds(
                    {
                        "healthz": lambda _r: phases.HEALTHZ_WRK,
                        "checkout": lambda _r, tag=tag: phases.checkout_wrk(sku, tag, plan.checkout_cap),
                    },
                    url=stack.url,
                    rounds=1,
                    connections=plan.ceiling_concurrency,
                    seconds=plan.round_seconds,
                    ok={"healthz": "200", "checkout": "202"},
                    cpus=cpus,
                    first_round=r,  # the two sides' order swapped every round too
                )
            run = runs[server.label]
            run["checkout"] += side["checkout"]["rates"]
            run["healthz"] += side["healthz"]["rates"]
            run["runs"] += side["checkout"]["runs"]
            run["cpu"].append(cpu.percent["web"])
            measured = time.monotonic()
            phases.persisted_wait(product_id=product_id, timeout=120)
            phases.broker_idle_wait(timeout=60)
            run["seconds"].append(
                {
                    "restart": round(restarted - clock, 1),
                    "measure": round(measured - restarted, 1),
                    "settle": round(time.monotonic() - measured, 1),
                }
            )
    stack.web_restart()
    table = []
    for label, run in runs.items():
        server = run["server"]
        table.append(
            {
                "server": server.name,
                "label": label,
                "workers": server.workers,
                "threads": server.threads,
                "checkout_rps": round(statistics.median(run["checkout"]), 1),
                "checkout_rps_rounds": [round(x, 1) for x in run["checkout"]],
                "checkout_latency_ms": phases.runs_latency_ms(run["runs"]),
                "healthz_rps": round(statistics.median(run["healthz"]), 1),
                "healthz_rps_rounds": [round(x, 1) for x in run["healthz"]],
                "web_cpu": round(statistics.median(run["cpu"]), 1),
                "seconds": run["seconds"],  # restart, warm-up and measure, settle: where the phase's time went
            }
        )
    reference = next((row for row in table if row["server"] == "gunicorn"), table[0])
    for row in table:
        row["vs"] = reference["label"]
        row["checkout_rps_ratio"] = (
            round(row["checkout_rps"] / reference["checkout_rps"], 2) if reference["checkout_rps"] else 0.0
        )
        row["checkout_p99_ratio"] = (
            round(row["checkout_latency_ms"]["p99"] / reference["checkout_latency_ms"]["p99"], 2)
            if reference["checkout_latency_ms"]["p99"]
            else 0.0
        )
        row["healthz_rps_ratio"] = (
            round(row["healthz_rps"] / reference["healthz_rps"], 2) if reference["healthz_rps"] else 0.0
        )
    return {
        "rounds": plan.rounds_ceiling,
        "round_seconds": plan.round_seconds,
        "concurrency": plan.ceiling_concurrency,
        "table": table,
    }


def flash_summary(*, plan: Plan, sale: dict, gates: dict, cpu: dict) -> dict:
    """The flash phase's figures (latest.json's "flash"). Latencies "on the
    wire" start when the request had its connection; "from arrival" when the
    buyer sent it, so they include waiting for one of the generator's
    `concurrency` connections (docs/benchmarks.md "What is measured")."""
    from bench.load import latency_ms, rate, wire_latency_ms

    last_delivery = max(gates["delivered_at"], default=sale["started_wall"])
    return {
        "keys": plan.flash_keys,
        "buyers": plan.flash_buyers,
        "concurrency": plan.design_concurrency,
        "poll_seconds": plan.flash_poll_seconds,
        "checkout_rps": round(rate(sale["checkouts"]), 1),
        # The target (issue 15) is judged on the wire: a real buyer has a
        # connection of their own; the pool of `concurrency` is the generator's.
        "checkout_latency_ms": wire_latency_ms(sale["checkouts"]),
        "checkout_latency_from_arrival_ms": latency_ms(sale["checkouts"]),
        "checkout_pool_wait_ms": latency_ms_from_seconds([s.pool_wait for s in sale["checkouts"]]),
        "pay_latency_ms": wire_latency_ms(sale["pays"]),
        "pay_latency_from_arrival_ms": latency_ms(sale["pays"]),
        "paid_to_delivered_ms": latency_ms_from_seconds(gates["paid_to_delivered_s"]),
        # 202 -> order row under the crowd, from the 202's arrival at the load
        # generator, which is itself late under load: a lower bound.
        "persist_lag_ms": latency_ms_from_seconds(gates["persist_lag_s"]),
        "delivered_per_s": round(gates["delivered"] / max(last_delivery - sale["started_wall"], 1e-3), 1),
        # The buyers' order polls (conditional, as the order page's): their
        # share of the phase's requests, latency, and how many were 304s.
        "polls": {
            "count": len(sale["polls"]),
            "share_of_requests": round(
                len(sale["polls"]) / max(1, len(sale["polls"]) + len(sale["checkouts"]) + len(sale["pays"])),
                3,
            ),
            "not_modified": sum(1 for p in sale["polls"] if p.status == 304),
            "latency_ms": wire_latency_ms(sale["polls"]),
            "latency_from_arrival_ms": latency_ms(sale["polls"]),
        },
        "cpu": cpu,
        "gates": {k: v for k, v in gates.items() if k not in ("paid_to_delivered_s", "delivered_at", "persist_lag_s")},
    }


def latency_ms_from_seconds(values: list[float]) -> dict:
    from bench.load import percentile

    ms = [v * 1000 for v in values]
    return {q: round(percentile(ms, n), 1) for q, n in (("p50", 50), ("p95", 95), ("p99", 99))}


if __name__ == "__main__":
    sys.exit(main())
