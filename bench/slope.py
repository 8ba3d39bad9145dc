"""The scaling slope: the design phase (our checkout against the naive
design, many buyers on one product) with the web server pinned to 1 core and
to 2 cores (taskset), the load generator pinned apart as far as the machine
allows. Our checkout holds no row lock, so it should gain almost the second
core; the naive design queues every buyer on one stock row, so it should not.
MariaDB, Redis and the Celery processes are not pinned: they are shared
servers, as in production.

The projection for 8 and 16 cores is a model, not a measurement: constant
efficiency per doubling of cores, r(n) = r(2) · slope^log2(n/2) for ours,
capped by the Redis headroom measured in the same run (one Redis answers the
checkout script at most that often); the naive design flat at its 2-core rate
(one hot row)."""

import math
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass

from . import phases

PROJECTED_CORES = (8, 16)


@dataclass(frozen=True)
class CpuPlan:
    """Where the web server and the load generator run for one core count."""

    server: str  # taskset list
    loadgen: str
    apart: bool  # False: the load generator shares a CPU with the server


def cpu_plan(*, cores: int, available: list[int]) -> CpuPlan:
    """The server on the last `cores` CPUs, the load generator on up to two
    of the others; with none left, on the first CPU, shared with the server
    (on 2 CPUs: 1 core = server on CPU 1, wrk on CPU 0; 2 cores = server on
    0-1, wrk on 0)."""
    server = available[-cores:]
    rest = [cpu for cpu in available if cpu not in server]
    loadgen = rest[:2] or available[:1]
    return CpuPlan(server=",".join(map(str, server)), loadgen=",".join(map(str, loadgen)), apart=bool(rest))


def available_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def slope(
    stack,
    *,
    hot_sku: str,
    hot_product_id: int,
    naive_sku: str,
    rounds: int,
    seconds: float,
    connections: int,
    caps: dict,
    redis_evalsha_rps: float,
    meter,
) -> dict:
    """`rounds` rounds, each a 1-core and a 2-core run of the design phase
    (the order swapped every round, so a neighbour's load falls on both);
    the server is restarted on its CPUs and warmed up before each run, and
    the Celery backlog of the run's checkouts is persisted after it."""
    available = available_cpus()
    if len(available) < 2:
        return {"skipped": "one CPU: no 2-core run"}
    plans = {cores: cpu_plan(cores=cores, available=available) for cores in (1, 2)}
    measured = {cores: {"design": [], "cpu": [], "seconds": []} for cores in plans}
    for r in range(rounds):
        for cores in (1, 2) if r % 2 == 0 else (2, 1):
            plan = plans[cores]
            clock = time.monotonic()
            stack.web_restart(cpus=plan.server)
            restarted = time.monotonic()
            phases.warm_up(
                url=stack.url, sku=hot_sku, tag=f"slope-warm{r}c{cores}", connections=connections, cpus=plan.loadgen
            )
            with meter() as cpu:
                design = phases.design(
                    url=stack.url,
                    sku=hot_sku,
                    naive_sku=naive_sku,
                    rounds=1,
                    duration=seconds,
                    concurrency=connections,
                    counts=caps,
                    cpus=plan.loadgen,
                    tag=f"slope{r}c{cores}",
                    first_round=r,
                )
            measured[cores]["design"].append(design)
            measured[cores]["cpu"].append(cpu.percent)
            done = time.monotonic()
            phases.persisted_wait(product_id=hot_product_id, timeout=120)
            phases.broker_idle_wait(timeout=60)
            # Where the phase's time went: restart, warm-up and measure, settle.
            measured[cores]["seconds"].append(
                {
                    "restart": round(restarted - clock, 1),
                    "measure": round(done - restarted, 1),
                    "settle": round(time.monotonic() - done, 1),
                }
            )
    return slope_summary(
        measured,
        plans=plans,
        rounds=rounds,
        seconds=seconds,
        connections=connections,
        redis_evalsha_rps=redis_evalsha_rps,
    )


def slope_summary(
    measured: dict, *, plans: dict, rounds: int, seconds: float, connections: int, redis_evalsha_rps: float
) -> dict:
    """Per core count the rates of each round; the slopes and the 2-core
    design ratio as medians of per-round ratios (the runs of one round were
    measured back to back); the projection."""

    def rates(cores, side):
        return [d[f"{side}_orders_per_s"] for d in measured[cores]["design"]]

    def median_ratio(numerators, denominators):
        pairs = [a / b for a, b in zip(numerators, denominators, strict=True) if b]
        return round(statistics.median(pairs), 2) if pairs else 0.0

    ours = {cores: rates(cores, "ours") for cores in plans}
    naive = {cores: rates(cores, "naive") for cores in plans}
    result = {
        "rounds": rounds,
        "round_seconds": seconds,
        "connections": connections,
        "cpus": {
            str(cores): {"server": p.server, "load_generator": p.loadgen, "apart": p.apart}
            for cores, p in plans.items()
        },
        "ours_orders_per_s": {str(c): round(statistics.median(v), 1) for c, v in ours.items()},
        "naive_orders_per_s": {str(c): round(statistics.median(v), 1) for c, v in naive.items()},
        "ours_orders_per_s_rounds": {str(c): v for c, v in ours.items()},
        "naive_orders_per_s_rounds": {str(c): v for c, v in naive.items()},
        "ours_slope": median_ratio(ours[2], ours[1]),
        "naive_slope": median_ratio(naive[2], naive[1]),
        "design_ratio_2_cores": median_ratio(ours[2], naive[2]),
        "latency_ms": {
            str(c): {
                "ours": _latency_over_rounds([d["ours_latency_ms"] for d in measured[c]["design"]]),
                "naive": _latency_over_rounds([d["naive_latency_ms"] for d in measured[c]["design"]]),
            }
            for c in plans
        },
        # Answers by status over the rounds (a 0-rate round shows here as no answers).
        "answers": {
            str(c): {side: _answers_over_rounds(measured[c]["design"], side) for side in ("ours", "naive")}
            for c in plans
        },
        "seconds": {str(c): measured[c]["seconds"] for c in plans},
        "naive_errors": {
            str(c): {
                kind: sum(d["naive_errors"][kind] for d in measured[c]["design"])
                for kind in ("lock_wait_timeout", "deadlock", "other")
            }
            for c in plans
        },
        # % of one core, median over rounds: the web server's, and the load
        # generator's (wrk), which shares CPU 0 with the server in a 2-core
        # run on a 2-CPU machine.
        "cpu": {
            str(c): {
                group: round(statistics.median(p[group] for p in measured[c]["cpu"]), 1)
                for group in measured[c]["cpu"][0]
            }
            for c in plans
        },
    }
    result["projection"] = projection(
        ours_2=result["ours_orders_per_s"]["2"],
        naive_2=result["naive_orders_per_s"]["2"],
        ours_slope=result["ours_slope"],
        redis_evalsha_rps=redis_evalsha_rps,
    )
    return result


def _answers_over_rounds(designs: list[dict], side: str) -> dict:
    merged = Counter()
    for design in designs:
        merged.update(design[f"{side}_answers"])
    return dict(merged)


def _latency_over_rounds(rounds: list[dict]) -> dict:
    """Each percentile and the mean: the median over rounds; max: the largest."""
    return {
        **{q: round(statistics.median(r[q] for r in rounds), 1) for q in ("p50", "p95", "p99", "mean")},
        "max": max(r["max"] for r in rounds),
    }


def projection(*, ours_2: float, naive_2: float, ours_slope: float, redis_evalsha_rps: float) -> dict:
    """What the measured slope predicts for bigger servers (a model: see the
    module's docstring)."""
    cores = {}
    for n in PROJECTED_CORES:
        modelled = ours_2 * ours_slope ** math.log2(n / 2)
        capped = 0 < redis_evalsha_rps < modelled
        ours = redis_evalsha_rps if capped else modelled
        cores[str(n)] = {
            "ours_orders_per_s": round(ours, 1),
            "naive_orders_per_s": round(naive_2, 1),
            "design_ratio": round(ours / naive_2, 1) if naive_2 else 0.0,
            "capped_by": "redis_headroom" if capped else "",
        }
    return {
        "label": "projection (a model, not a measurement)",
        "model": "ours: r(n) = r(2) * slope^log2(n/2), at most the Redis headroom (EVALSHA/s of the checkout "
        "script, same run); naive: flat at its 2-core rate (one hot row)",
        "redis_evalsha_rps": redis_evalsha_rps,
        "cores": cores,
    }
