"""The flash-sale phase alone, at any size: to find where its time goes
without the rest of `make bench` (a minute or two at the full size).

    .venv/bin/python -m bench.flash_only [--keys 1000] [--buyers 4000] [--concurrency 200]
        [--poll-seconds 2] [--seconds 120] [--web-server gunicorn|gunicorn-sync|granian]
        [--web-workers 2] [--web-threads 16] --database cardshop_bench_<you> --prefix cardshop-bench-<you>

Same stack and settings as bench.flash_sale (bench/stack.py), the same phase
(bench/phases.py flash_sale) and figures (bench/flash_sale.py flash_summary);
writes `flash-only.json` and `flash-only.md` into --out and prints the
latter. Exits 1 when a correctness gate fails (never on a timing)."""

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
    args = parser.parse_args(argv)
    plan = replace(
        FULL,
        flash_keys=args.keys,
        flash_buyers=args.buyers,
        design_concurrency=args.concurrency,
        flash_poll_seconds=args.poll_seconds,
        flash_seconds=args.seconds,
    )
    config = StackConfig(
        database=args.database,
        prefix=args.prefix,
        web_workers=args.web_workers,
        web_threads=args.web_threads,
        web_server=args.web_server,
        celery_concurrency=args.celery_concurrency,
    )
    stack = BenchStack(config)
    os.environ.update(bench_environment(config, site_url=stack.url))
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    try:
        stack.database_recreate()
        import django

        django.setup()
        stack.broker_prepare()
        result = run(stack, plan)
    finally:
        stack.teardown()
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
    gates = result["gates"]
    if (
        gates["oversold"]
        or gates["duplicates"]
        or gates["paid_undelivered"]
        or not gates["sold_equals_min_keys_demand"]
    ):
        print("CORRECTNESS GATES FAILED", file=sys.stderr)
        return 1
    return 0


def run(stack: BenchStack, plan) -> dict:
    from bench import phases
    from bench.scenario import product_with_keys

    flash = product_with_keys(sku="BENCH-FLASH", keys=plan.flash_keys, per_buyer_limit=1)
    stack.web_start()
    stack.worker_start()
    stack.beat_start()
    meter = phases.CpuMeter({"loadgen": lambda: [os.getpid()], "web": stack.server_pids, "workers": stack.worker_pids})
    began = time.monotonic()
    with meter as cpu:
        sale = asyncio.run(
            phases.flash_sale(
                url=stack.url,
                sku="BENCH-FLASH",
                product_id=flash,
                buyers=plan.flash_buyers,
                concurrency=plan.design_concurrency,
                poll_seconds=plan.flash_poll_seconds,
                duration=plan.flash_seconds,
            )
        )
    seconds = round(time.monotonic() - began, 1)
    gates = phases.flash_gates(
        product_id=flash, keys=plan.flash_keys, buyers=plan.flash_buyers, sale=sale, settle_timeout=30
    )
    result = flash_summary(plan=plan, sale=sale, gates=gates, cpu=cpu.percent)
    result["phase_seconds"] = seconds
    return result


def markdown(f: dict) -> str:
    from bench.report import flash_latency_rows

    c = f["config"]
    gates = f["gates"]
    return "\n".join(
        [
            f"# Flash phase alone: {c['web_server']} {c['web_workers']}×{c['web_threads']}, "
            f"{f['phase_seconds']} s, load average {c['loadavg_before']} → {c['loadavg_after']}",
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
    )


if __name__ == "__main__":
    sys.exit(main())
