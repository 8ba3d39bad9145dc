"""What the durable gate costs (issue 12): the checkout script under
redis-benchmark against private redis-servers started from
deploy/redis/redis.conf, one per persistence setting, in one session:

- `always`: the prescribed configuration (AOF fsynced before each reply);
- `everysec`: AOF fsynced once a second (a power loss may take the last second);
- `off`: no AOF, no snapshots (a restart comes back empty).

    .venv/bin/python -m bench.gate_durability [--requests 100000] [--clients 50 200] [--dir /srv/redis-bench]

The data directories are made under --dir (default: the temporary directory):
put it on the disk the gate Redis will use, since fsync is what is measured.

Prints a Markdown table (docs/benchmarks.md) and writes
bench/results/gate_durability.json. Never fails on a timing."""

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.flash_sale import GATE_SETTINGS as SETTINGS  # noqa: E402
from testing.redis_server import GATE_REDIS_CONF, RedisServer  # noqa: E402


def script_call(prefix: str) -> tuple[str, list[str], list[str]]:
    """The checkout script and the app's own KEYS/ARGV layout, on a gate
    with stock to spare (a fresh order number and buyer per call via
    redis-benchmark's __rand_int__)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cardshop.settings.local")
    os.environ["REDIS_KEY_PREFIX"] = prefix
    import django

    django.setup()
    from apps.stock.scripts import LUA_DIR
    from apps.stock.services import checkout_script_arguments

    keys, args = checkout_script_arguments(
        product_id=1,
        order_no="bench-__rand_int__",
        buyers=["e:__rand_int__"],
        quantity=1,
        token_hash="0" * 64,
        email="buyer@bench.example.com",
    )
    return (LUA_DIR / "checkout.lua").read_text(), [str(k) for k in keys], [str(a) for a in args]


def gate_prepare(client, keys: list[str]) -> None:
    stock_key, rules_key = keys[0], keys[1]
    client.set(stock_key, 10**12)
    client.hset(
        rules_key,
        mapping={
            "active": "1",
            "starts": -1,
            "ends": -1,
            "max_per_order": 5,
            "per_buyer_limit": 10**6,
            "price": "9.90",
            "currency": "CNY",
            "paused": "0",
            "max_unpaid": 10**6,
        },
    )


def evalsha_run(
    *, server: RedisServer, sha: str, keys: list[str], args: list[str], requests: int, clients: int
) -> dict:
    argv = ["redis-benchmark", "-p", str(server.port), "-n", str(requests), "-c", str(clients)]
    argv += ["-r", "100000000", "--csv", "--precision", "3", "EVALSHA", sha, str(len(keys)), *keys, *args]
    output = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True).stdout
    rows = [row for row in csv.reader(io.StringIO(output)) if row]
    header, values = rows[0], rows[-1]
    pick = {name: float(values[header.index(name)]) for name in ("rps", "p50_latency_ms", "p99_latency_ms")}
    return {"clients": clients, "requests": requests, **pick}


def script_phase(*, requests: int, clients: list[int], work: Path) -> dict:
    import redis

    source, keys, args = script_call("bench-gate")
    results = {}
    for name, overrides in SETTINGS.items():
        server = RedisServer(config=GATE_REDIS_CONF, data_dir=work / name, overrides=overrides).start()
        try:
            client = redis.Redis.from_url(server.url)
            sha = client.script_load(source)
            gate_prepare(client, keys)
            results[name] = [
                evalsha_run(server=server, sha=sha, keys=keys, args=args, requests=requests, clients=c) for c in clients
            ]
            info = client.info("persistence")
            results[name + "_aof_bytes"] = info.get("aof_current_size", 0)
        finally:
            server.stop()
    return results


def checkout_phase(*, work: Path, rounds: int, seconds: float, concurrency: int) -> dict:
    """The shop's own checkout through gunicorn, A/B: two gunicorns on one
    bench database, one on a gate Redis as prescribed (`always`), one on a
    gate without persistence (`off`); rounds alternate between them, the
    order swapped each round (bench.phases.paired_rounds). No Celery worker:
    reservations stay queued (the backlog pause is off), so only checkout's
    own path is measured."""
    import asyncio

    import redis

    from bench.phases import accepted, checkout_request, paired_rounds
    from bench.stack import BenchStack, StackConfig
    from testing.processes import ChildProcess, free_port, gunicorn_command

    gates = {
        name: RedisServer(config=GATE_REDIS_CONF, data_dir=work / f"checkout-{name}", overrides=SETTINGS[name]).start()
        for name in ("always", "off")
    }
    config = StackConfig(database="cardshop_bench_gatecost", prefix="cardshop-bench-gatecost")
    stack = BenchStack(config)
    webs: dict[str, tuple[ChildProcess, str]] = {}
    try:
        stack.database_recreate()
        stack.manage(
            "create_product",
            "--sku",
            "GATE-COST",
            "--title",
            "Gate cost",
            "--price",
            "9.90",
            "--per-buyer-limit",
            "1",
            "--max-per-order",
            "1",
            "--min-page-seconds",
            "0",
        )
        for name in ("always", "off"):
            env = {**stack.env, "REDIS_URL": gates[name].url, "GATE_REDIS_URL": gates[name].url}
            subprocess.run(
                [sys.executable, "manage.py", "warm_stock", "--sku", "GATE-COST"],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            client = redis.Redis.from_url(gates[name].url)
            for key in client.scan_iter(match=f"{config.prefix}:*:stock"):
                client.set(key, 10**9)  # stock to spare: every checkout is a sale
            port = free_port()
            web = ChildProcess(
                f"gunicorn-{name}",
                gunicorn_command(port=port, workers=config.web_workers, threads=config.web_threads),
                env=env,
                log_path=work / f"gunicorn-{name}.log",
            ).start()
            webs[name] = (web, f"http://127.0.0.1:{port}")
            web.wait_for_url(f"http://127.0.0.1:{port}/healthz", timeout=30)
        runs = asyncio.run(
            paired_rounds(
                {
                    name: (lambda r, url=url, name=name: checkout_request(url, "GATE-COST", f"{name}{r}"))
                    for name, (_web, url) in webs.items()
                },
                rounds=rounds,
                concurrency=concurrency,
                duration=seconds,
                counts=dict.fromkeys(webs, 10**9),
                ok=dict.fromkeys(webs, accepted),
            )
        )
    finally:
        for web, _url in webs.values():
            web.stop()
        stack.teardown()
        for gate in gates.values():
            gate.stop()
    from bench.load import latency_ms

    return {
        name: {
            "rps_rounds": [round(x, 1) for x in runs[name]["rates"]],
            "latency_ms": latency_ms(runs[name]["samples"]),
        }
        for name in webs
    }


def markdown(result: dict) -> str:
    lines = [
        "| gate persistence | clients | EVALSHA/s of checkout.lua | p50 / p99 ms | vs `off` |",
        "|---|---|---|---|---|",
    ]
    for name in SETTINGS:
        for row, base in zip(result["script"][name], result["script"]["off"], strict=True):
            ratio = row["rps"] / base["rps"] if base["rps"] else 0
            lines.append(
                f"| `{name}` | {row['clients']} | {row['rps']:.0f} | {row['p50_latency_ms']:.2f} / "
                f"{row['p99_latency_ms']:.2f} | {ratio:.2f} |"
            )
    return "\n".join(lines)


def checkout_markdown(checkout: dict) -> str:
    always, off = checkout["always"], checkout["off"]
    lines = [
        "| round | checkout req/s, gate `always` | gate `off` | always / off |",
        "|---|---|---|---|",
    ]
    for n, (a, o) in enumerate(zip(always["rps_rounds"], off["rps_rounds"], strict=True), start=1):
        lines.append(f"| {n} | {a} | {o} | {a / o:.2f} |" if o else f"| {n} | {a} | {o} | |")
    med_a, med_o = statistics.median(always["rps_rounds"]), statistics.median(off["rps_rounds"])
    lines.append(f"| median | {med_a:.1f} | {med_o:.1f} | {med_a / med_o:.2f} |")
    la, lo = always["latency_ms"], off["latency_ms"]
    lines.append(f"| p50 / p99 ms | {la['p50']} / {la['p99']} | {lo['p50']} / {lo['p99']} | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--dir", type=Path, default=None, help="where the servers' data directories go")
    parser.add_argument("--checkout", action="store_true", help="also A/B the whole checkout through gunicorn")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark is missing: apt-get install redis-tools (make system-deps does)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gate-durability-", dir=args.dir))
    try:
        result = {"script": script_phase(requests=args.requests, clients=args.clients, work=work)}
        if args.checkout:
            result["checkout"] = checkout_phase(
                work=work, rounds=args.rounds, seconds=args.seconds, concurrency=args.concurrency
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["filesystem"] = subprocess.run(
        ["df", "-T", str(args.dir or tempfile.gettempdir())], capture_output=True, text=True
    ).stdout.splitlines()[-1]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gate_durability.json").write_text(json.dumps(result, indent=2))
    print(markdown(result))
    if "checkout" in result:
        print()
        print(checkout_markdown(result["checkout"]))
    print(f"\ndata on: {result['filesystem']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
