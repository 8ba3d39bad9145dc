"""`make loadtest`: start the shop on its own database and Redis prefix, run
bench/locustfile.py headless against it, bounded in users and duration, and
write Locust's CSV and HTML reports to bench/results/.

    .venv/bin/python -m bench.loadtest [--users 50] [--spawn-rate 10] [--run-time 60] [--keys 2000]
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import BenchStack, StackConfig, bench_environment  # noqa: E402

MAX_USERS, MAX_SECONDS = 500, 600
SKU = "BENCH-LOAD"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50, help=f"concurrent users (at most {MAX_USERS})")
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--run-time", type=int, default=60, help=f"seconds (at most {MAX_SECONDS})")
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("BENCH_WEB_WORKERS", 2)))
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE_NAME", "cardshop_bench_load"))
    parser.add_argument("--prefix", default=os.environ.get("BENCH_REDIS_KEY_PREFIX", "cardshop-bench-load"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    users, seconds = min(args.users, MAX_USERS), min(args.run_time, MAX_SECONDS)

    config = StackConfig(database=args.database, prefix=args.prefix, web_workers=args.web_workers)
    stack = BenchStack(config)
    os.environ.update(bench_environment(config, site_url=stack.url))
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        stack.database_recreate()
        import django

        django.setup()
        from bench.scenario import product_with_keys

        product_with_keys(sku=SKU, keys=args.keys, per_buyer_limit=1)
        stack.web_start()
        stack.worker_start()
        stack.beat_start()
        locust = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(ROOT / "bench" / "locustfile.py"),
                "--headless",
                "--users",
                str(users),
                "--spawn-rate",
                str(args.spawn_rate),
                "--run-time",
                f"{seconds}s",
                "--stop-timeout",
                "10",
                "--host",
                stack.url,
                "--csv",
                str(args.out / "locust"),
                "--html",
                str(args.out / "locust.html"),
                "--only-summary",
            ],
            cwd=ROOT,
            env={**os.environ, "LOCUST_SKU": SKU},
            timeout=seconds + 120,
        )
    finally:
        stack.teardown()
    print(f"Locust reports: {args.out / 'locust_stats.csv'}, {args.out / 'locust.html'}")
    return locust.returncode


if __name__ == "__main__":
    sys.exit(main())
