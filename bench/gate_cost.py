"""What the durable gate costs checkout (issue 15): the ceiling phase's
checkout side with the gate on a private redis-server started from
deploy/redis/redis.conf as prescribed (`appendfsync always`), against the
same file with `--appendonly no`, in paired rounds, the order swapped each
round. For each round the web server and the Celery worker (the persister
drains reservations from the gate, so it follows the gate) are restarted
with GATE_REDIS_URL on that side's server; the cache, sessions and broker
stay on the run's Redis.

The baseline is a second private server rather than the shared Redis: same
binary, same file, same empty start, no other traffic (the shared one also
carries the cache, the broker and other runs), so the two sides differ only
in persistence. Both keep their data under var/ in the project, on the disk
the project runs from, not in a tmpfs: fsync to a real disk is what costs."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.flash_sale import GATE_SETTINGS
from testing.redis_server import GATE_REDIS_CONF, RedisServer

ROOT = Path(__file__).resolve().parent.parent
# --gate-redis's overrides of deploy/redis/redis.conf, for the two sides.
SIDES = {name: GATE_SETTINGS[name] for name in ("always", "off")}


def _filesystem(path: Path) -> str:
    row = subprocess.run(["df", "--output=fstype,source", str(path)], capture_output=True, text=True).stdout
    return " ".join(row.split()[2:]) if row else "?"


def _persisted_wait(client, *, product_id: int, timeout: float) -> None:
    from apps.stock.redis_keys import persist_queue_key

    deadline = time.monotonic() + timeout
    while client.llen(persist_queue_key(product_id)) and time.monotonic() < deadline:
        time.sleep(0.2)


def gate_checkout_cost(stack, plan, *, sku: str, product_id: int, meter, cpus: str) -> dict:
    """Checkout req/s and latency on each side; ratio = always ÷ off (the
    median of the per-round ratios). `sku` is a product of its own whose
    keys cover every round of both sides (stock is warmed on each server
    from MariaDB). Leaves the web server and the worker on the run's gate."""
    import statistics

    from bench import phases

    work = ROOT / "var" / f"bench-gate-cost-{stack.config.prefix}"
    shutil.rmtree(work, ignore_errors=True)
    gates = {}
    runs = {name: {"rates": [], "runs": [], "web_cpu": []} for name in SIDES}
    try:
        for name, overrides in SIDES.items():
            gates[name] = RedisServer(
                config=GATE_REDIS_CONF, data_dir=work / name, overrides=overrides, name=f"bench-gate-{name}"
            ).start()
            subprocess.run(
                [sys.executable, "manage.py", "warm_stock", "--sku", sku],
                cwd=ROOT,
                env={**stack.env, "GATE_REDIS_URL": gates[name].url},
                check=True,
                stdout=subprocess.DEVNULL,
            )
        names = list(SIDES)
        for r in range(plan.rounds_ceiling):
            for name in names if r % 2 == 0 else reversed(names):
                env = {"GATE_REDIS_URL": gates[name].url}
                stack.web_restart(**env)
                stack.worker_restart(**env)
                # A fresh server's first requests open connections: not what is compared.
                phases.warm_up(
                    url=stack.url, sku=sku, tag=f"gw{r}{name}", connections=plan.ceiling_concurrency, cpus=cpus
                )
                with meter() as cpu:
                    side = phases.wrk_paired_rounds(
                        {"checkout": lambda _r, tag=f"gate{r}{name}": phases.checkout_wrk(sku, tag, plan.checkout_cap)},
                        url=stack.url,
                        rounds=1,
                        connections=plan.ceiling_concurrency,
                        seconds=plan.round_seconds,
                        ok={"checkout": "202"},
                        cpus=cpus,
                    )
                runs[name]["rates"] += side["checkout"]["rates"]
                runs[name]["runs"] += side["checkout"]["runs"]
                runs[name]["web_cpu"].append(cpu.percent["web"])
                # The side's reservations become orders before the other side is measured.
                _persisted_wait(gates[name].client(), product_id=product_id, timeout=120)
        aof_bytes = gates["always"].client().info("persistence").get("aof_current_size", 0)
    finally:
        try:
            stack.web_restart()
            stack.worker_restart()
        finally:
            for gate in gates.values():
                gate.remove()
            shutil.rmtree(work, ignore_errors=True)
    pairs = [a / o for a, o in zip(runs["always"]["rates"], runs["off"]["rates"], strict=True) if o]
    result = {
        "rounds": plan.rounds_ceiling,
        "round_seconds": plan.round_seconds,
        "concurrency": plan.ceiling_concurrency,
        "data_dir_filesystem": _filesystem(work.parent),
        "always_aof_bytes": aof_bytes,
        "ratio_rounds": [round(x, 3) for x in pairs],
        "checkout_rps_ratio": round(statistics.median(pairs), 3) if pairs else 0.0,
    }
    for name, run in runs.items():
        result[name] = {
            "checkout_rps": round(statistics.median(run["rates"]), 1),
            "checkout_rps_rounds": [round(x, 1) for x in run["rates"]],
            "checkout_latency_ms": phases.runs_latency_ms(run["runs"]),
            "answers": phases.runs_answers(run["runs"]),
            "web_cpu": round(statistics.median(run["web_cpu"]), 1),
        }
    return result
