"""The volume phase (issue 15), paired: the ceiling, the batched drain and the
flash sale on empty tables and on tables holding years of history
(bench/volume.py), measured alternately in the same minutes, so the noise of
a shared machine falls on both sides alike.

- Each side has a new stack (bench/stack.py) of its own beside the run's:
  its own database (`<run database>_empty`, `<run database>_volume`), Redis
  key prefix (`<prefix>-empty`, `<prefix>-volume`) and, on RabbitMQ,
  virtual host. The history is filled into the full side's database only;
  then both sides' web servers, workers and beat start. (The run's own
  database is not the empty side: it holds the earlier phases' orders, whose
  expiry would load one side only.)
- Before the first round InnoDB writes the fill's pages out (FLUSH TABLES …
  FOR EXPORT, then the buffer pool's dirty pages are waited for:
  innodb_flushed_wait), so the fill's background writes do not slow the
  first full-table rounds.
- `volume_rounds` rounds, the sides in ABBA order (empty, full, full, empty,
  …), which cancels a drift that is linear in time. A side's round is a
  warm-up, checkout and /healthz by wrk (the ceiling phase's two sides, their
  order swapped each round), the batched drain of that side's newest awaiting
  orders, and in the first `volume_flash_rounds` rounds a whole flash sale on
  a product of its own, its gates checked; then the side's backlog is
  persisted and its queues emptied before the other side starts. Each side's
  products are made in its own database.
- Each figure's ratio is the median over rounds of volume ÷ empty of the
  same round (paired_ratio); "within 10 %" is a median of 0.9–1.1.

Each side's step runs in a child process of the driver started with that
stack's environment (`python -m bench.volume_paired STEP OUT` with the
step's arguments as JSON on stdin). The database, the Redis key prefix, the
cache's prefix and the Celery app's broker and key prefix are read from the
environment when a process starts and kept in several places (connection
objects, the cache backend, kombu's pooled channels); a child per step has
each of them right by construction, where switching them inside the driver
would have to find every copy, and both sides are driven the same way."""

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from bench.flash_sale import Plan, flash_measure
from bench.stack import BenchStack, StackConfig
from bench.sustained import SustainedPlan

ROOT = Path(__file__).resolve().parent.parent
SIDES = ("empty", "full")

# Each figure of a side's round, and whether it is a rate or a latency; a
# flash figure is None in a round without a flash sale.


def _flash(pick):
    return lambda side: pick(side["flash"]) if side["flash"] else None


FIGURES = {
    "ceiling: checkout req/s": ("rate", lambda side: side["ceiling"]["checkout_rps"]),
    "ceiling: /healthz req/s": ("rate", lambda side: side["ceiling"]["healthz_rps"]),
    "ceiling: checkout ÷ /healthz": ("rate", lambda side: side["ceiling"]["ratio"]),
    "ceiling: checkout p50 ms": ("latency", lambda side: side["ceiling"]["checkout_latency_ms"]["p50"]),
    "ceiling: checkout p99 ms": ("latency", lambda side: side["ceiling"]["checkout_latency_ms"]["p99"]),
    "drain: keys assigned/s (batched)": ("rate", lambda side: side["drain"]["keys_per_s"]),
    "flash: checkout req/s": ("rate", _flash(lambda f: f["checkout_rps"])),
    "flash: checkout p50 ms": ("latency", _flash(lambda f: f["checkout_latency_ms"]["p50"])),
    "flash: checkout p99 ms": ("latency", _flash(lambda f: f["checkout_latency_ms"]["p99"])),
    "flash: paid → delivered p50 ms": ("latency", _flash(lambda f: f["paid_to_delivered_ms"]["p50"])),
    "flash: paid → delivered p95 ms": ("latency", _flash(lambda f: f["paid_to_delivered_ms"]["p95"])),
    "flash: order poll p99 ms": ("latency", _flash(lambda f: f["polls"]["latency_ms"]["p99"])),
    "flash: delivered orders/s": ("rate", _flash(lambda f: f["delivered_per_s"])),
}


# --- the arithmetic


def side_order(round_no: int) -> tuple[str, str]:
    """ABBA: empty first in even rounds, full first in odd ones."""
    return SIDES if round_no % 2 == 0 else SIDES[::-1]


def paired_ratio(empty: list, full: list) -> dict:
    """One figure over the rounds: `empty[r]` and `full[r]` were measured in
    round r (None: not measured that round). The ratio is the median of the
    rounds' volume ÷ empty; a round whose empty side is 0 has no ratio."""
    pairs = [(e, f) for e, f in zip(empty, full, strict=True) if e is not None and f is not None]
    ratios = [f / e for e, f in pairs if e]
    ratio = statistics.median(ratios) if ratios else 0.0
    return {
        "empty": round(statistics.median(e for e, _ in pairs), 3) if pairs else 0.0,
        "volume": round(statistics.median(f for _, f in pairs), 3) if pairs else 0.0,
        "empty_rounds": [e for e, _ in pairs],
        "volume_rounds": [f for _, f in pairs],
        "ratio_rounds": [round(x, 3) for x in ratios],
        "ratio": round(ratio, 3),
        "within_10pct": bool(ratios) and 0.9 <= ratio <= 1.1,
    }


def gates_merged(gates: list[dict]) -> dict:
    """The gates of several flash sales as one: counts summed, and
    sold = min(K, demand) held by every one."""
    return {
        "flashes": len(gates),
        **{
            name: sum(g[name] for g in gates)
            for name in ("oversold", "duplicates", "paid_undelivered", "sold", "expected_sold")
        },
        "answered_never_recorded": sum(g["answered_never_recorded"] for g in gates),
        "sold_equals_min_keys_demand": all(g["sold_equals_min_keys_demand"] for g in gates),
    }


# --- the driver's side


def volume_config(config: StackConfig, side: str = "volume") -> StackConfig:
    """A side's stack configuration: the run's, on a database, a Redis key
    prefix and (RabbitMQ) a virtual host of its own, named after the side
    ("volume": the full tables; "empty"). The Redis broker's keys carry the
    prefix already."""
    from cardshop.broker import broker_is_redis, broker_vhost

    broker = config.broker_url or os.environ.get("BENCH_CELERY_BROKER_URL", "")
    if broker and not broker_is_redis(broker):
        parts = urlsplit(broker)
        broker = urlunsplit(parts._replace(path="/" + quote(f"{broker_vhost(broker)}-{side}", safe="")))
    return dataclasses.replace(
        config, database=f"{config.database}_{side}", prefix=f"{config.prefix}-{side}", broker_url=broker
    )


def side_step(stack: BenchStack, step: str, **arguments) -> dict:
    """Run one step (STEPS) in a child process with the stack's environment."""
    with tempfile.TemporaryDirectory(prefix="cardshop-volume-") as work:
        out = Path(work) / "result.json"
        subprocess.run(
            [sys.executable, "-m", "bench.volume_paired", step, str(out)],
            input=json.dumps(arguments),
            text=True,
            cwd=ROOT,
            env=stack.env,
            check=True,
            # A hung step must not hang the run: the longest, the full fill, takes ~5 min.
            timeout=1800,
        )
        return json.loads(out.read_text())


def innodb_flushed_wait(*, timeout: float, steady: float = 10.0) -> dict:
    """Until the buffer pool's dirty pages are at most 1 % of its pages (or
    100), or have not fallen for `steady` s, at most `timeout` s. The server
    is shared: other clients' writes keep some pages dirty, and MariaDB's page
    cleaner leaves them while the server is busy, so "not falling any more"
    is as flushed as it gets (the fill's own tables were written out by
    FLUSH TABLES … FOR EXPORT). Returns the counts, the wait and its reason."""
    from django.db import connection

    def status(name: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE %s", [name])
            return int(cursor.fetchone()[1])

    started = time.monotonic()
    total = status("Innodb_buffer_pool_pages_total")
    dirty_before = dirty = lowest = status("Innodb_buffer_pool_pages_dirty")
    lowest_at = started
    reason = "low"
    while dirty > max(100, total // 100):
        now = time.monotonic()
        if now - lowest_at >= steady:
            reason = "steady"
            break
        if now - started >= timeout:
            reason = "timeout"
            break
        time.sleep(1)
        dirty = status("Innodb_buffer_pool_pages_dirty")
        if dirty < lowest:
            lowest, lowest_at = dirty, time.monotonic()
    return {
        "pages_total": total,
        "dirty_before": dirty_before,
        "dirty_after": dirty,
        "seconds": round(time.monotonic() - started, 1),
        "ended": reason,
    }


def volume_compare(stack: BenchStack, plan: Plan, *, lap, cpus: str) -> dict:
    """The paired volume phase (module docstring) beside the run's `stack`;
    wrk on `cpus`. The second stack is torn down (its database dropped) also
    when the phase fails."""
    # Both sides on new stacks: the run's own database holds the earlier
    # phases' orders, tens of thousands awaiting payment that its workers
    # would expire during the rounds, on one side only.
    full_stack = BenchStack(volume_config(stack.config, "volume"))
    empty_stack = BenchStack(volume_config(stack.config, "empty"))
    stacks = {"empty": empty_stack, "full": full_stack}

    def vlap(name):
        lap("volume_" + name)

    try:
        for s in stacks.values():
            s.redis_clear()
            s.database_recreate()
            s.broker_prepare()
        vlap("database")
        fill = side_step(full_stack, "fill", orders=plan.volume_orders, keys=plan.volume_keys)
        vlap("fill")
        flushed = innodb_flushed_wait(timeout=120)
        vlap("flushed")
        for s in stacks.values():
            s.web_start()
            s.worker_start()
            s.beat_start()
        vlap("start_processes")
        products = {
            side: side_step(s, "products", plan=dataclasses.asdict(plan), tag=side) for side, s in stacks.items()
        }
        vlap("setup_data")
        rounds = {side: [] for side in SIDES}
        for r in range(plan.volume_rounds):
            # The drain's rate depends a little on its backlog's size: the
            # round's second side drains no more orders than its first did (a
            # side's first round may have fewer than drain_orders awaiting).
            drain_orders = plan.drain_orders
            for side in side_order(r):
                s = stacks[side]
                flashes = products[side]["flash"]
                measured = side_step(
                    s,
                    "round",
                    plan=dataclasses.asdict(plan),
                    round_no=r,
                    url=s.url,
                    hot=products[side]["hot"],
                    drain_orders=drain_orders,
                    flash=flashes[r] if r < len(flashes) else None,
                    web_pids=s.server_pids(),
                    worker_pids=s.worker_pids(),
                    cpus=cpus,
                )
                rounds[side].append(measured)
                drain_orders = min(drain_orders, measured["drain"]["orders"]) or plan.drain_orders
        vlap("rounds")
        explained = side_step(full_stack, "explain", product_id=products["full"]["hot"]["id"])
        vlap("explain")
    finally:
        try:
            full_stack.teardown()
        finally:
            empty_stack.teardown()

    table = []
    for name, (kind, pick) in FIGURES.items():
        empty = [pick(side) for side in rounds["empty"]]
        full = [pick(side) for side in rounds["full"]]
        table.append({"figure": name, "kind": kind, **paired_ratio(empty, full)})
    gates = {side: [r["flash"]["gates"] for r in rounds[side] if r["flash"]] for side in SIDES}
    return {
        "rounds": plan.volume_rounds,
        "flash_rounds": min(plan.volume_flash_rounds, plan.volume_rounds),
        "order": [list(side_order(r)) for r in range(plan.volume_rounds)],
        "round_seconds": plan.round_seconds,
        "concurrency": plan.ceiling_concurrency,
        "database": full_stack.config.database,
        "fill": fill,
        "flushed": flushed,
        "table": table,
        "explain": explained,
        "all_hot_queries_use_an_index": all(q["uses_index"] for q in explained.values()),
        "sides": rounds,
        "flash_gates_sides": {side: gates_merged(gates[side]) for side in SIDES},
        # What main() fails the run on: every flash sale of both sides.
        "flash_gates": gates_merged(gates["empty"] + gates["full"]),
    }


# --- the steps, each in a child process with one stack's environment


def _plan(fields: dict) -> Plan:
    return Plan(**{**fields, "sustained": SustainedPlan(**fields["sustained"])})


def step_fill(*, orders: int, keys: int) -> dict:
    """The history (bench/volume.py), then its tables' pages written out:
    FLUSH TABLES … FOR EXPORT merges their change buffer entries and flushes
    their dirty pages before it returns (the lock it takes is released at once)."""
    from django.db import connection

    from apps.cardkeys.models import CardKey
    from apps.orders.models import Order
    from bench.volume import volume_fill

    fill = volume_fill(orders=orders, keys=keys)
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(f"FLUSH TABLES {Order._meta.db_table}, {CardKey._meta.db_table} FOR EXPORT")
        cursor.execute("UNLOCK TABLES")
    fill["seconds"]["tables_flushed"] = round(time.monotonic() - started, 1)
    return fill


def step_products(*, plan: dict, tag: str) -> dict:
    """A side's products in its database: one for every round's warm-up and
    checkouts (the drain takes its orders), one per flash sale."""
    from bench.scenario import product_with_keys

    plan = _plan(plan)
    hot_sku = f"BENCH-VOL-HOT-{tag.upper()}"
    hot = product_with_keys(
        sku=hot_sku,
        keys=plan.volume_rounds * (plan.checkout_cap + 2 * plan.ceiling_concurrency),
        per_buyer_limit=1,
    )
    flashes = []
    for n in range(min(plan.volume_flash_rounds, plan.volume_rounds)):
        sku = f"BENCH-VOL-FLASH-{tag.upper()}-{n}"
        flashes.append({"sku": sku, "id": product_with_keys(sku=sku, keys=plan.flash_keys, per_buyer_limit=1)})
    return {"hot": {"sku": hot_sku, "id": hot}, "flash": flashes}


def step_round(
    *,
    plan: dict,
    round_no: int,
    url: str,
    hot: dict,
    drain_orders: int,
    flash: dict | None,
    web_pids: list[int],
    worker_pids: list[int],
    cpus: str,
) -> dict:
    """One side's round (module docstring), draining at most `drain_orders`.
    The web server's and workers' pids come from the driver, which started them."""
    from bench import phases
    from bench.wrk import wrk_cpu_seconds

    plan = _plan(plan)
    seconds = {}
    clock = time.monotonic()

    def lap(name):
        nonlocal clock
        seconds[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    def meter():
        return phases.CpuMeter(
            {"loadgen": lambda: [os.getpid()], "web": lambda: web_pids, "workers": lambda: worker_pids},
            counters={"loadgen": wrk_cpu_seconds},
        )

    # The other side has just had the machine: this server's first requests
    # after a pause are not what is compared.
    phases.warm_up(url=url, sku=hot["sku"], tag=f"vwarm{round_no}", connections=plan.ceiling_concurrency, cpus=cpus)
    lap("warm_up")
    with meter() as cpu:
        runs = phases.wrk_paired_rounds(
            {
                "healthz": lambda _r: phases.HEALTHZ_WRK,
                "checkout": lambda _r: phases.checkout_wrk(hot["sku"], f"vol{round_no}", plan.checkout_cap),
            },
            url=url,
            rounds=1,
            connections=plan.ceiling_concurrency,
            seconds=plan.round_seconds,
            ok={"healthz": "200", "checkout": "202"},
            cpus=cpus,
            first_round=round_no,
        )
    checkout_rps, healthz_rps = runs["checkout"]["rates"][0], runs["healthz"]["rates"][0]
    ceiling = {
        "checkout_rps": round(checkout_rps, 1),
        "healthz_rps": round(healthz_rps, 1),
        "ratio": round(checkout_rps / healthz_rps, 3) if healthz_rps else 0.0,
        "checkout_latency_ms": phases.runs_latency_ms(runs["checkout"]["runs"]),
        "healthz_latency_ms": phases.runs_latency_ms(runs["healthz"]["runs"]),
        "checkout_answers": phases.runs_answers(runs["checkout"]["runs"]),
        "cpu": cpu.percent,
    }
    lap("ceiling")
    phases.persisted_wait(product_id=hot["id"], timeout=120)
    phases.broker_idle_wait(timeout=60)
    lap("persist_backlog")
    drain = phases.drain(product_id=hot["id"], count=drain_orders, timeout=120)
    lap("drain_batched")
    phases.broker_idle_wait(timeout=60)
    lap("mail_backlog")
    flash_result = None
    if flash:
        flash_result, _sale, _gates = flash_measure(
            url, plan, sku=flash["sku"], product_id=flash["id"], meter=meter, lap=lap
        )
        lap("flash_gates")
    # This side's leftovers (reservations, mail) off the workers before the
    # other side is measured.
    phases.persisted_wait(product_id=hot["id"], timeout=120)
    phases.broker_idle_wait(timeout=60)
    lap("settle")
    return {"ceiling": ceiling, "drain": drain, "flash": flash_result, "seconds": seconds}


def step_explain(*, product_id: int) -> dict:
    """EXPLAIN of the hot queries on the full tables, for a product of the
    run and a historic delivered order."""
    from apps.orders.models import Order
    from bench.volume import hot_queries_explain

    historic = (
        Order.objects.filter(product__sku__startswith="HIST-", status=Order.Status.DELIVERED).order_by("id").first()
    )
    return hot_queries_explain(product_id=product_id, order_no=historic.order_no, order_id=historic.id)


STEPS = {"fill": step_fill, "products": step_products, "round": step_round, "explain": step_explain}


def main(argv=None) -> int:
    step, out = argv if argv is not None else sys.argv[1:]
    arguments = json.loads(sys.stdin.read())
    import django

    django.setup()
    result = STEPS[step](**arguments)
    Path(out).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
