"""Sustained end to end: buyers who pay as soon as their order is placed,
arriving at a fixed rate (open loop: a new buyer every 1/rate seconds,
whatever the server answers), each taking the flash sale's journey
(bench/journey.py). Measures delivered orders/s, the time from checkout to
keys visible to the buyer, and the load generator's own lag behind its
schedule."""

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass

from .journey import Journey, buyer_journey
from .load import answers, latency_ms, percentile, session_new

# Targets of issue 15: delivered/s ≥ 0.8 × the arrival rate, time to keys p99 ≤ 3 s.
DELIVERED_SHARE_TARGET = 0.8
TIME_TO_KEYS_P99_TARGET_MS = 3000.0
# An arrival rate of this share of the checkout ceiling measured in the same run.
CEILING_SHARE = 0.5
# An order placed in the window should show its keys within the time-to-keys
# target, so the window's first seconds (no delivery yet possible) are left
# out of the delivered rate.
RAMP_SECONDS = TIME_TO_KEYS_P99_TARGET_MS / 1000
# A buyer who starts this much later than scheduled counts as "late" (the generator fell behind).
LATE_SECONDS = 0.1


@dataclass(frozen=True)
class SustainedPlan:
    """Arrivals for `seconds` at `rate` buyers/s (0: CEILING_SHARE of the
    checkout ceiling measured in the run), at most `rate_cap` (0: no cap; an
    explicit rate is never capped); buyers poll until `grace` seconds after
    the last arrival."""

    seconds: float = 60.0
    rate: float = 0.0
    rate_cap: float = 0.0
    grace: float = 30.0
    # After the run at the target's rate, the search for the rate this
    # machine sustains (sustainable_rate_search): at most this many runs,
    # each at half the rate of the run before, `search_seconds` long.
    search_steps: int = 0
    search_seconds: float = 20.0
    search_grace: float = 15.0


# The quick run's few seconds, capped so that they stay a few seconds of `make bench-quick`.
SUSTAINED_QUICK = SustainedPlan(seconds=1.5, rate_cap=40, grace=4)
SUSTAINED_SMOKE = SustainedPlan(seconds=2, rate_cap=10, grace=10)


def keys_needed(*, rate: float, seconds: float) -> int:
    """Every scheduled buyer can buy one key, with a margin."""
    return math.ceil(rate * seconds * 1.05) + 20


async def sustained(
    *, url: str, sku: str, rate: float, seconds: float, concurrency: int, grace: float, first_polls: tuple
) -> dict:
    """round(rate × seconds) buyers, buyer i scheduled at i / rate seconds;
    each polls until `grace` seconds after the last arrival.
    `first_polls`: the waits (s) before the first poll after checkout and
    after paying, as the order page is rendered (apps/orders/poll.py)."""
    count = max(1, round(rate * seconds))
    started, started_wall = time.perf_counter(), time.time()
    journey = Journey(
        url=url,
        sku=sku,
        deadline=started + seconds + grace,
        placed_poll_s=first_polls[0],
        paid_poll_s=first_polls[1],
        polls=[],
        checkouts=[],
        pays=[],
    )
    tasks = []
    async with session_new(concurrency=concurrency) as session:
        for i in range(count):
            # Open loop: the schedule is fixed; a late generator starts the
            # overdue buyers at once rather than shifting the schedule.
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(buyer_journey(session, journey, email=f"sus-{i}@bench.example.com")))
        runs = await asyncio.gather(*tasks)
    return {
        "rate": rate,
        "seconds": seconds,
        "started": started,
        "started_wall": started_wall,
        # Buyer i's scheduled start, seconds since the phase began.
        "scheduled": [i / rate for i in range(count)],
        "runs": list(runs),
        "checkouts": journey.checkouts,
        "polls": journey.polls,
        "concurrency": concurrency,
    }


def _ms(values: list[float]) -> dict:
    ms = [v * 1000 for v in values]
    return {
        **{q: round(percentile(ms, n), 1) for q, n in (("p50", 50), ("p95", 95), ("p99", 99))},
        "max": round(max(ms), 1) if ms else 0.0,
    }


def _per_second(offsets: list[float], seconds: int) -> list[int]:
    counts = [0] * seconds
    for t in offsets:
        if 0 <= t < seconds:
            counts[int(t)] += 1
    return counts


def delivered_times(*, product_id: int) -> dict:
    """order_no -> delivered_at (epoch seconds) of the product's delivered orders."""
    from apps.orders.models import Order

    rows = Order.objects.filter(product_id=product_id, delivered_at__isnull=False).values_list(
        "order_no", "delivered_at"
    )
    return {no: at.timestamp() for no, at in rows}


def summary(*, phase: dict, delivered: dict, gates: dict, keys: int, rate_source: str) -> dict:
    """The phase's figures and targets. `delivered`: delivered_times();
    `gates`: phases.flash_gates on the phase's product."""
    started, started_wall = phase["started"], phase["started_wall"]
    rate, seconds, runs = phase["rate"], phase["seconds"], phase["runs"]
    lag = [r.sent_at - started - s for r, s in zip(runs, phase["scheduled"], strict=True)]
    actual = [r.sent_at - started for r in runs]
    span = max(actual) - min(actual) if len(actual) > 1 else 0.0
    with_keys = [r for r in runs if r.keys]
    time_to_keys = [r.keys_at - r.sent_at for r in with_keys]
    # The server's part, from the database: checkout sent -> delivered_at (one
    # host, one clock); the rest of the time to keys is the order page's poll delay.
    server = [delivered[r.order_no] - r.sent_wall for r in runs if r.order_no in delivered]
    poll_delay = [
        r.sent_wall + (r.keys_at - r.sent_at) - delivered[r.order_no] for r in with_keys if r.order_no in delivered
    ]
    delivered_offsets = [at - started_wall for at in delivered.values()]
    if seconds > 2 * RAMP_SECONDS:
        steady = sum(1 for t in delivered_offsets if RAMP_SECONDS <= t < seconds)
        delivered_per_s = steady / (seconds - RAMP_SECONDS)
        delivered_basis = f"delivered_at in [{RAMP_SECONDS:g} s, {seconds:g} s) of the arrival window"
    else:  # too short for a steady state (smoke, quick): all of them, first checkout to last delivery
        last = max(delivered_offsets, default=seconds)
        delivered_per_s = len(delivered) / max(last, 1e-3)
        delivered_basis = "all deliveries, first checkout to last delivery (window too short for a steady state)"
    keys_p99 = _ms(time_to_keys)["p99"]
    timeline_seconds = math.ceil(seconds + max([0.0, *delivered_offsets, *(r.keys_at - started for r in with_keys)]))
    timeline_seconds = min(timeline_seconds, math.ceil(2 * seconds) + 60)
    share = delivered_per_s / rate if rate else 0.0
    return {
        "arrival_rate_per_s": round(rate, 1),
        "rate_source": rate_source,
        "seconds": seconds,
        "keys": keys,
        "connections": phase["concurrency"],
        "arrivals": {
            "scheduled": len(phase["scheduled"]),
            "started": len(runs),
            # The generator's own lag: actual start of each checkout - its scheduled start.
            "start_lag_ms": _ms(lag),
            "started_late": sum(1 for x in lag if x > LATE_SECONDS),
            "late_threshold_ms": LATE_SECONDS * 1000,
            "achieved_rate_per_s": round((len(runs) - 1) / span, 1) if span else 0.0,
        },
        "delivered_per_s": round(delivered_per_s, 1),
        "delivered_per_s_basis": delivered_basis,
        "delivered_share_of_rate": round(share, 2),
        "delivered_share_target": DELIVERED_SHARE_TARGET,
        "delivered_share_met": share >= DELIVERED_SHARE_TARGET,
        "delivered_total": len(delivered),
        "buyers_with_keys": len(with_keys),
        "buyers_without_keys": len(runs) - len(with_keys),
        "time_to_keys_ms": _ms(time_to_keys),
        "time_to_keys_p99_target_ms": TIME_TO_KEYS_P99_TARGET_MS,
        # A buyer left without keys has waited longer than any: the target
        # holds only when every buyer saw keys.
        "time_to_keys_met": bool(with_keys) and len(with_keys) == len(runs) and keys_p99 <= TIME_TO_KEYS_P99_TARGET_MS,
        "checkout_to_delivered_ms": _ms(server),
        # The buyer's side before the server delivers: the wait for the
        # placed order (the order page's first poll) and the payment.
        "checkout_to_paid_ms": _ms([r.paid_at - r.sent_at for r in runs if r.paid_at]),
        "delivered_to_visible_ms": _ms(poll_delay),
        "paid_to_delivered_ms": _ms(gates["paid_to_delivered_s"]),
        "checkout_latency_ms": latency_ms(phase["checkouts"]),
        "checkout_answers": answers(phase["checkouts"]),
        "polls": {
            "count": len(phase["polls"]),
            "per_buyer": round(len(phase["polls"]) / max(1, len(runs)), 2),
            "answers": answers(phase["polls"]),
            "latency_ms": latency_ms(phase["polls"]),
        },
        "payments": sum(1 for r in runs if r.paid_at),
        "timeline": {
            "arrivals_per_s": _per_second(actual, timeline_seconds),
            "scheduled_per_s": _per_second(phase["scheduled"], timeline_seconds),
            "delivered_per_s": _per_second(delivered_offsets, timeline_seconds),
            "keys_visible_per_s": _per_second([r.keys_at - started for r in with_keys], timeline_seconds),
        },
        "gates": {k: v for k, v in gates.items() if k not in ("paid_to_delivered_s", "delivered_at", "persist_lag_s")},
    }


def measure(stack, plan: SustainedPlan, *, checkout_rps: float, concurrency: int, meter) -> tuple[dict, dict]:
    """The phase in a benchmark run (bench/flash_sale.py) at the target's
    rate (or the plan's). Returns the figures and the raw phase (for the
    chart). The search for the rate this machine sustains
    (sustainable_rate_search) runs later in the run, when search_wanted."""
    if plan.rate:
        rate, source = plan.rate, "--sustained-rate"
    else:
        rate, source = (
            CEILING_SHARE * checkout_rps,
            f"{CEILING_SHARE:.0%} of the checkout ceiling ({checkout_rps} req/s)",
        )
        if plan.rate_cap and rate > plan.rate_cap:
            rate, source = plan.rate_cap, f"{source}, capped at {plan.rate_cap:g}/s in this plan"
    rate = max(rate, 1.0)
    result, phase = run_at(
        stack,
        sku="BENCH-SUSTAINED",
        rate=rate,
        seconds=plan.seconds,
        grace=plan.grace,
        concurrency=concurrency,
        meter=meter,
    )
    result["rate_source"] = source
    return result, phase


def search_wanted(plan: SustainedPlan, result: dict) -> bool:
    """Whether the run at the target's rate missed a target in a plan that searches."""
    return bool(plan.search_steps) and not (result["delivered_share_met"] and result["time_to_keys_met"])


def sustainable_rate_search(stack, plan: SustainedPlan, *, first_rate, checkout_rps, concurrency, meter) -> dict:
    """Shorter runs at half the rate of the run before, until one meets both
    targets or `plan.search_steps` have run: the rate this machine carries
    end to end, as a share of its checkout ceiling. Each run has a product
    and gates of its own."""
    steps, rate = [], first_rate
    for step in range(plan.search_steps):
        figures, _phase = run_at(
            stack,
            sku=f"BENCH-SUSTAINED-{step + 1}",
            rate=max(rate, 1.0),
            seconds=plan.search_seconds,
            grace=plan.search_grace,
            concurrency=concurrency,
            meter=meter,
        )
        met = figures["delivered_share_met"] and figures["time_to_keys_met"]
        steps.append(
            {
                "rate_per_s": figures["arrival_rate_per_s"],
                "share_of_ceiling": round(figures["arrival_rate_per_s"] / checkout_rps, 3) if checkout_rps else 0.0,
                "delivered_share_of_rate": figures["delivered_share_of_rate"],
                "time_to_keys_ms": figures["time_to_keys_ms"],
                "buyers_without_keys": figures["buyers_without_keys"],
                "polls_per_buyer": figures["polls"]["per_buyer"],
                "cpu": figures["cpu"],
                "gates": figures["gates"],
                "met": met,
            }
        )
        if met:
            break
        rate /= 2
    sustained = [s for s in steps if s["met"]]
    return {
        "seconds": plan.search_seconds,
        "steps": steps,
        "sustained_rate_per_s": sustained[0]["rate_per_s"] if sustained else None,
        "sustained_share_of_ceiling": sustained[0]["share_of_ceiling"] if sustained else None,
    }


def run_at(stack, *, sku: str, rate: float, seconds: float, grace: float, concurrency: int, meter) -> tuple[dict, dict]:
    """One sustained run on a product of its own: its keys, the buyers, the
    gates. Returns the figures and the raw phase."""
    from apps.orders.models import Order
    from apps.orders.poll import BASE_POLL_MS

    from . import phases
    from .scenario import product_with_keys

    keys = keys_needed(rate=rate, seconds=seconds)
    clock = time.monotonic()
    product_id = product_with_keys(sku=sku, keys=keys, per_buyer_limit=1)
    import_seconds = round(time.monotonic() - clock, 1)
    phases.persisted_wait(product_id=product_id, timeout=60)
    phases.broker_idle_wait(timeout=60)
    with meter() as cpu:
        phase = asyncio.run(
            sustained(
                url=stack.url,
                sku=sku,
                rate=rate,
                seconds=seconds,
                concurrency=concurrency,
                grace=grace,
                # The order page as it is first rendered: a fresh order is
                # queued, and after paying the buyer lands on it paid.
                first_polls=(BASE_POLL_MS[Order.Status.QUEUED] / 1000, BASE_POLL_MS[Order.Status.PAID] / 1000),
            )
        )
    # An overloaded run leaves payment notifications queued and retrying:
    # the settling waits longer than after a flash sale.
    gates = phases.flash_gates(
        product_id=product_id, keys=keys, buyers=len(phase["runs"]), sale=phase, settle_timeout=90
    )
    result = summary(
        phase=phase, delivered=delivered_times(product_id=product_id), gates=gates, keys=keys, rate_source=""
    )
    result["keys_import_s"] = import_seconds
    # Where the orders ended (after the gates' settling): says what a missed target or gate was made of.
    result["order_statuses"] = dict(
        Counter(Order.objects.filter(product_id=product_id).values_list("status", flat=True))
    )
    result["cpu"] = cpu.percent
    return result, phase
