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
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.flash_sale import GATE_SETTINGS as SETTINGS  # noqa: E402
from testing.processes import GateRedis  # noqa: E402


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


def evalsha_run(*, server: GateRedis, sha: str, keys: list[str], args: list[str], requests: int, clients: int) -> dict:
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
        server = GateRedis(data_dir=work / name, overrides=overrides).start()
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--dir", type=Path, default=None, help="where the servers' data directories go")
    args = parser.parse_args(argv)
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark is missing: apt-get install redis-tools (make system-deps does)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gate-durability-", dir=args.dir))
    try:
        result = {"script": script_phase(requests=args.requests, clients=args.clients, work=work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["filesystem"] = subprocess.run(
        ["df", "-T", str(args.dir or tempfile.gettempdir())], capture_output=True, text=True
    ).stdout.splitlines()[-1]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gate_durability.json").write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print(f"\ndata on: {result['filesystem']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
