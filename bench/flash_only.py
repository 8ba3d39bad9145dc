"""The flash-sale phase alone, at any size: to find where its time goes
without the rest of `make bench` (a minute or two at the full size).

    .venv/bin/python -m bench.flash_only [--keys 1000] [--buyers 4000] [--concurrency 200]
        [--poll-seconds 2] [--seconds 120] [--web-server gunicorn|gunicorn-sync|granian]
        [--web-workers 2] [--web-threads 16] [--rounds 1] [--variant NAME=VALUE ...]
        --database cardshop_bench_<you> --prefix cardshop-bench-<you>

Same stack and settings as bench.flash_sale (bench/stack.py), the same phase
(bench/phases.py flash_sale) and figures (bench/flash_sale.py flash_summary).
Each round sells a fresh product after a warm-up of the web server (in
`make bench` the earlier phases warm it). With --variant, an A/B on one
machine state: rounds alternate A (as configured) and B (the web server
restarted with the variant's environment), so a neighbour's load falls on
both alike. Writes `flash-only.json` and `flash-only.md` into --out and
prints the latter. Exits 1 when a correctness gate fails (never on a timing)."""

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.flash_sale import FULL, flash_summary  # noqa: E402
from bench.slope import available_cpus, cpu_plan  # noqa: E402
from bench.stack import BenchStack, StackConfig, bench_environment  # noqa: E402
from testing.processes import web_server_default  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=FULL.flash_keys)
    parser.add_argument("--buyers", type=int, default=FULL.flash_buyers)
    parser.add_argument("--concurrency", type=int, default=FULL.design_concurrency, help="the generator's connections")
    parser.add_argument("--poll-seconds", type=float, default=FULL.flash_poll_seconds)
    parser.add_argument("--seconds", type=float, default=FULL.flash_seconds, help="the phase's time bound")
    parser.add_argument("--web-server", default=web_server_default(), choices=["gunicorn", "gunicorn-sync", "granian"])
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("BENCH_WEB_WORKERS", 2)))
    parser.add_argument("--web-threads", type=int, default=int(os.environ.get("BENCH_WEB_THREADS", 16)))
    parser.add_argument("--celery-concurrency", type=int, default=int(os.environ.get("BENCH_CELERY_CONCURRENCY", 2)))
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE_NAME", "cardshop_bench"))
    parser.add_argument("--prefix", default=os.environ.get("BENCH_REDIS_KEY_PREFIX", "cardshop-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the web server in the B rounds (every other round, from the second)",
    )
    args = parser.parse_args(argv)
    variant = dict(item.split("=", 1) for item in args.variant)
    plan = replace(
        FULL,
        flash_keys=args.keys,
        flash_buyers=args.buyers,
        design_concurrency=args.concurrency,
        flash_poll_seconds=args.poll_seconds,
        flash_seconds=args.seconds,
    )
    config = StackConfig.from_args(args)
    stack = BenchStack(config)
    os.environ.update(bench_environment(config, site_url=stack.url))
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    try:
        stack.database_recreate()
        import django

        django.setup()
        stack.broker_prepare()
        rounds = run(stack, plan, rounds=args.rounds, variant=variant)
    finally:
        stack.teardown()
    result = {"rounds": rounds, "variant": variant}
    result["config"] = {
        "web_server": config.web_server,
        "web_workers": config.web_workers,
        "web_threads": config.web_threads,
        "celery_concurrency": config.celery_concurrency,
        "loadavg_before": loadavg_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "flash-only.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    text = markdown(result)
    (args.out / "flash-only.md").write_text(text)
    print(text)
    for sale in rounds:
        gates = sale["gates"]
        if (
            gates["oversold"]
            or gates["duplicates"]
            or gates["paid_undelivered"]
            or not gates["sold_equals_min_keys_demand"]
        ):
            print(f"CORRECTNESS GATES FAILED in round {sale['round']}", file=sys.stderr)
            return 1
    return 0


def run(stack: BenchStack, plan, *, rounds: int, variant: dict) -> list[dict]:
    from bench import phases
    from bench.scenario import product_with_keys

    warm_keys = 2 * plan.design_concurrency
    products = [
        product_with_keys(sku=f"BENCH-FLASH-{r}", keys=plan.flash_keys, per_buyer_limit=1) for r in range(rounds)
    ]
    product_with_keys(sku="BENCH-WARM", keys=rounds * warm_keys, per_buyer_limit=1)
    stack.worker_start()
    stack.beat_start()
    base_env = dict(stack.env)
    # wrk (the warm-up) where the main benchmark puts it.
    loadgen_cpus = cpu_plan(cores=len(available_cpus()), available=available_cpus()).loadgen
    results = []
    for r, product_id in enumerate(products):
        side = "B" if variant and r % 2 else "A"
        stack.env = {**base_env, **(variant if side == "B" else {})}
        stack.web_restart()
        phases.warm_up(
            url=stack.url, sku="BENCH-WARM", tag=f"warm{r}", connections=plan.design_concurrency, cpus=loadgen_cpus
        )
        phases.persisted_wait(product_id=product_id, timeout=60)
        phases.broker_idle_wait(timeout=60)
        meter = phases.CpuMeter(
            {"loadgen": lambda: [os.getpid()], "web": stack.server_pids, "workers": stack.worker_pids}
        )
        began = time.monotonic()
        with meter as cpu:
            sale = asyncio.run(
                phases.flash_sale(
                    url=stack.url,
                    sku=f"BENCH-FLASH-{r}",
                    product_id=product_id,
                    buyers=plan.flash_buyers,
                    concurrency=plan.design_concurrency,
                    poll_seconds=plan.flash_poll_seconds,
                    duration=plan.flash_seconds,
                )
            )
        seconds = round(time.monotonic() - began, 1)
        gates = phases.flash_gates(
            product_id=product_id, keys=plan.flash_keys, buyers=plan.flash_buyers, sale=sale, settle_timeout=30
        )
        summary = flash_summary(plan=plan, sale=sale, gates=gates, cpu=cpu.percent)
        summary.update(round=r, side=side, phase_seconds=seconds, loadavg=[round(x, 2) for x in os.getloadavg()])
        results.append(summary)
        print(f"round {r} ({side}): {summary_line(summary)}", flush=True)
    stack.env = base_env
    return results


def summary_line(f: dict) -> str:
    wire, arrival, polls = f["checkout_latency_ms"], f["checkout_latency_from_arrival_ms"], f["polls"]
    return (
        f"checkout on the wire p50/p99 {wire['p50']}/{wire['p99']} ms, from arrival {arrival['p50']}/{arrival['p99']}"
        f" ms, {f['checkout_rps']} req/s; polls {polls['share_of_requests']:.0%} p99 {polls['latency_ms']['p99']} ms;"
        f" web CPU {f['cpu']['web']} %; load {f['loadavg'][0]}"
    )


def markdown(result: dict) -> str:
    from bench.report import flash_latency_rows

    c = result["config"]
    variant = " ".join(f"{k}={v}" for k, v in result["variant"].items())
    lines = [
        f"# Flash phase alone: {c['web_server']} {c['web_workers']}×{c['web_threads']}, "
        f"load average {c['loadavg_before']} → {c['loadavg_after']}"
        + (f"; B rounds with {variant}" if variant else ""),
        "",
    ]
    for f in result["rounds"]:
        gates = f["gates"]
        lines += [
            f"## Round {f['round']} ({f['side']}), {f['phase_seconds']} s, load average {f['loadavg']}",
            "",
            "| measure | value |",
            "|---|---|",
            *flash_latency_rows(f),
            f"| paid → delivered p50 / p95 / p99 | {f['paid_to_delivered_ms']['p50']} / "
            f"{f['paid_to_delivered_ms']['p95']} / {f['paid_to_delivered_ms']['p99']} ms |",
            f"| CPU, % of one core: web / workers / load generator / machine busy % | {f['cpu']['web']} / "
            f"{f['cpu']['workers']} / {f['cpu']['loadgen']} / {f['cpu']['machine_busy']} |",
            f"| oversold / keys twice / paid undelivered | {gates['oversold']} / {gates['duplicates']} / "
            f"{gates['paid_undelivered']} |",
            f"| sold / delivered / expected | {gates['sold']} / {gates['delivered']} / {gates['expected_sold']} |",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
