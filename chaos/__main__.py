"""The chaos suite: `make chaos` (a few minutes at the default size).

    .venv/bin/python -m chaos [--faults worker-kill,redis-loss] [--orders 200] [--timeout 120]
                              [--database cardshop_chaos] [--prefix cardshop-chaos] [--out chaos/results]
                              [--gate-config deploy/redis/redis.conf | --gate-config none]
                              [--broker rabbitmq | private-rabbitmq | redis | URL] [--list]

Starts the shop on its own MariaDB database and Redis key prefix (gunicorn,
a Celery worker, beat, a private redis-server as the gate) and its own
RabbitMQ virtual host (or RabbitMQ node, or the Redis broker), runs each chosen
fault against it on a product of its own, reconciles, checks the invariants
I1–I5 from SQL, prints the table and writes chaos/results/latest.{md,json}.
Everything it started is stopped and its database dropped on the way out.
Exits 1 when an invariant fails or a fault did not recover."""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chaos.faults import DURABLE_GATE_CONFIG, FAULTS  # noqa: E402
from chaos.stack import BROKERS, ChaosConfig, ChaosStack  # noqa: E402


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = [f.name for f in FAULTS]
    parser.add_argument("--faults", default=",".join(names), help=f"comma-separated, of: {', '.join(names)}")
    parser.add_argument("--orders", type=int, default=int(os.environ.get("CHAOS_ORDERS", 200)), help="per fault")
    parser.add_argument("--timeout", type=float, default=180, help="seconds a fault may take to recover")
    parser.add_argument("--database", default=os.environ.get("CHAOS_DATABASE_NAME", "cardshop_chaos"))
    parser.add_argument("--prefix", default=os.environ.get("CHAOS_REDIS_KEY_PREFIX", "cardshop-chaos"))
    parser.add_argument("--out", type=Path, default=ROOT / "chaos" / "results")
    parser.add_argument(
        "--gate-config",
        default=str(DURABLE_GATE_CONFIG) if DURABLE_GATE_CONFIG.exists() else "none",
        help="the gate redis-server's config file; none: no persistence (default: deploy/redis/redis.conf if present)",
    )
    parser.add_argument(
        "--broker",
        default="auto",
        help="rabbitmq: the local RabbitMQ, in a virtual host named like --prefix; private-rabbitmq: a RabbitMQ "
        "node of the run's own (what rabbitmq-restart restarts); redis: the Redis broker; or a broker URL. "
        "Default (auto): private-rabbitmq when rabbitmq-restart runs, else rabbitmq",
    )
    parser.add_argument(
        "--mail-wait", type=float, default=20, help="seconds to wait for the delivered orders' mails before counting"
    )
    parser.add_argument(
        "--reuse-database",
        action="store_true",
        help="run on the named database (migrated already), flushed first, and leave it, instead of a fresh one",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the shop's processes (e.g. CELERY_VISIBILITY_TIMEOUT=3); repeatable",
    )
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    args = parser.parse_args(argv)
    args.fault_names = [n.strip() for n in args.faults.split(",") if n.strip()]
    unknown = set(args.fault_names) - set(names)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))} (known: {', '.join(names)})")
    try:
        args.extra_env = dict(item.split("=", 1) for item in args.env)
    except ValueError:
        parser.error("--env takes NAME=VALUE")
    if args.orders < 10:
        parser.error("--orders must be at least 10")
    if args.broker == "auto":
        args.broker = "private-rabbitmq" if "rabbitmq-restart" in args.fault_names else "rabbitmq"
    elif args.broker not in BROKERS and urlsplit(args.broker).scheme not in ("amqp", "redis", "rediss"):
        parser.error(f"--broker takes {', '.join(BROKERS)} or an amqp:// or redis:// URL")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.list:
        for fault in FAULTS:
            print(f"{fault.name:22} {fault.title}" + (f"  [needs {fault.needs}]" if fault.needs else ""))
        return 0
    gate_config = None if args.gate_config == "none" else Path(args.gate_config)
    config = ChaosConfig(
        database=args.database,
        prefix=args.prefix,
        gate_redis_config=gate_config,
        broker=args.broker,
        extra_env=args.extra_env,
    )
    stack = ChaosStack(config)
    # This process reads and writes what the children do: same database,
    # gate and broker (set before Django and Celery read their settings).
    os.environ.update(stack.env)
    began = time.monotonic()
    results = []
    runs = []
    try:
        stack.gate.start()
        stack.broker_start()
        if args.reuse_database:
            stack.manage("flush", "--noinput")
        else:
            stack.database_recreate()
        import django

        django.setup()
        from chaos.runner import fault_run, mails_recount

        print(f"[chaos] database ready in {time.monotonic() - began:.1f} s", flush=True)
        # gunicorn and the worker start side by side (each waits for its own answer).
        web = threading.Thread(target=stack.web_start)
        web.start()
        stack.beat_start()
        stack.worker_add()
        web.join()
        if not (stack.web and stack.web.alive()):
            raise RuntimeError(f"gunicorn did not start:\n{stack.web.log_tail() if stack.web else ''}")
        print(f"[chaos] shop started in {time.monotonic() - began:.1f} s", flush=True)
        chosen = [f for f in FAULTS if f.name in args.fault_names]
        for number, fault in enumerate(chosen, 1):
            print(f"[chaos] {number}/{len(chosen)} {fault.title} …", flush=True)
            result, sale = fault_run(
                stack, fault, orders=args.orders, timeout=args.timeout, run_tag=str(number), mail_wait=args.mail_wait
            )
            runs.append((result, sale))
            verdict = "skipped" if result.status == "skipped" else ("pass" if result.passed else "FAIL")
            print(
                f"[chaos]   {verdict}: recovered in {result.recover_seconds} s; {result.note} "
                f"({time.monotonic() - began:.1f} s since start)",
                flush=True,
            )
            results.append(result)
        mails_recount(stack, runs)
    finally:
        print(f"[chaos] logs: {stack.log_dir}", flush=True)
        stack.teardown(keep_database=args.reuse_database)
        print(f"[chaos] torn down at {time.monotonic() - began:.1f} s", flush=True)
    from chaos.report import write

    broker = urlsplit(stack.env.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1"))
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "orders": args.orders,
        "broker": f"{args.broker} ({broker.scheme}://{broker.hostname}:{broker.port or ''}{broker.path})",
        "gate": f"config {gate_config.relative_to(ROOT) if gate_config and gate_config.is_relative_to(ROOT) else gate_config}"
        if gate_config
        else "without persistence",
        "seconds": round(time.monotonic() - began, 1),
        "settings": args.extra_env,
        "revision": subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
    }
    print(write(results, out=args.out, meta=meta))
    failed = [r.title for r in results if r.status == "error" or (r.status == "ran" and not r.passed)]
    if failed:
        print("CHAOS FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
