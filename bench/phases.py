"""The measurements of one benchmark run. Each phase is bounded in requests and
in time; the ratios pair rounds of the two sides measured back to back, with
the order swapped every round, so a neighbour's load on this machine falls on
both sides alike."""

import asyncio
import csv
import io
import shutil
import statistics
import subprocess
import time
from collections import Counter
from urllib.parse import urlsplit

import psutil

from .journey import BuyerRun, Journey, buyer_journey
from .load import Sample, closed_loop, post_json, rate, session_new
from .wrk import WrkRequest, accepted_rate, buyer_body, wrk_run


class CpuMeter:
    """CPU seconds used by groups of processes over a stretch of wall time.
    A group may add `counters`: CPU seconds of processes that do not outlive
    the stretch (each wrk run), counted by their parent as it reaps them."""

    def __init__(self, groups: dict, counters: dict | None = None):
        self.groups = groups  # name -> callable returning pids
        self.counters = counters or {}  # name -> callable returning cumulative CPU seconds

    def _snapshot(self) -> dict:
        used = {}
        for name, pids in self.groups.items():
            total = 0.0
            for pid in pids():
                try:
                    times = psutil.Process(pid).cpu_times()
                    total += times.user + times.system
                except psutil.Error:
                    pass
            used[name] = total + (self.counters[name]() if name in self.counters else 0.0)
        return used

    def __enter__(self):
        self.started, self.before = time.perf_counter(), self._snapshot()
        psutil.cpu_percent()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.started
        after = self._snapshot()
        # Percent of one core; the machine's figure is of all its cores.
        self.percent = {name: round(100 * (after[name] - self.before[name]) / wall, 1) for name in after}
        self.percent["machine_busy"] = psutil.cpu_percent()
        self.wall = wall


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


# --- request functions


def checkout_request(url: str, sku: str, tag: str):
    async def send(session, i):
        status, body = await post_json(
            session, f"{url}/api/v1/orders", {"sku": sku, "quantity": 1, "email": f"{tag}-{i}@bench.example.com"}
        )
        return status, body.get("error", "")

    return send


async def _burst(request, *, concurrency: int, count: int, duration: float) -> list[Sample]:
    async with session_new(concurrency=concurrency) as session:
        return await closed_loop(session, request, concurrency=concurrency, count=count, duration=duration)


def accepted(sample: Sample) -> bool:
    return sample.status == 202


async def paired_rounds(sides: dict, *, rounds: int, concurrency: int, duration: float, counts: dict, ok: dict) -> dict:
    """Run the sides back to back, `rounds` times, the order swapped each round.
    Returns per side its samples and per-round rates (answers `ok` accepts per second)."""
    names = list(sides)
    result = {name: {"samples": [], "rates": []} for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            samples = await _burst(sides[name](r), concurrency=concurrency, count=counts[name], duration=duration)
            result[name]["samples"] += samples
            result[name]["rates"].append(rate(samples, ok=ok[name]))
    return result


# --- the throughput sides, sent by wrk (bench/wrk.py)


def checkout_wrk(sku: str, tag: str, cap: int) -> WrkRequest:
    return WrkRequest("/api/v1/orders", method="POST", body=buyer_body({"sku": sku, "quantity": 1}), tag=tag, cap=cap)


def naive_wrk(sku: str, tag: str, cap: int) -> WrkRequest:
    return WrkRequest("/bench/naive/orders", method="POST", body=buyer_body({"sku": sku}), tag=tag, cap=cap)


def bare_wrk(gate: int, tag: str, cap: int) -> WrkRequest:
    return WrkRequest("/bench/bare-evalsha", method="POST", body=buyer_body({"gate": gate}), tag=tag, cap=cap)


HEALTHZ_WRK = WrkRequest("/healthz")


def warm_up(*, url: str, sku: str, tag: str, connections: int, cpus: str) -> None:
    """Two checkouts a connection (2 × connections keys), answers not kept: a
    fresh server's first requests open connections, import and fill caches,
    which is not what is compared; and wrk drops what is unanswered when its
    time is up, so a cold server's first second could count nothing."""
    wrk_run(url=url, request=checkout_wrk(sku, tag, 2 * connections), seconds=5, connections=connections, cpus=cpus)


def wrk_paired_rounds(
    sides: dict,
    *,
    url: str,
    rounds: int,
    connections: int,
    seconds: float,
    ok: dict,
    cpus: str,
    first_round: int = 0,
    settle: dict | None = None,
) -> dict:
    """Run the sides back to back with wrk, `rounds` times, the order swapped
    each round (round numbers start at `first_round`, so a caller running one
    round at a time still alternates); `settle`: name -> a call made after
    each of that side's runs, before the next side starts. `sides`: name -> round -> WrkRequest;
    `ok`: name -> the status counted as served ("202", "200"). Returns per side
    its wrk runs and per-round rates."""
    names = list(sides)
    result = {name: {"runs": [], "rates": []} for name in names}
    for r in range(first_round, first_round + rounds):
        for name in names if r % 2 == 0 else reversed(names):
            run = wrk_run(url=url, request=sides[name](r), seconds=seconds, connections=connections, cpus=cpus)
            result[name]["runs"].append(run)
            result[name]["rates"].append(accepted_rate(run, status=ok[name]))
            if settle and name in settle:
                settle[name]()
    return result


def runs_latency_ms(runs: list[dict]) -> dict:
    """wrk reports percentiles per run, not samples: each percentile is the
    median over the runs, max the largest, mean weighted by answers."""
    if not runs:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    answered = sum(run["requests"] for run in runs) or 1
    return {
        **{q: round(statistics.median(run["latency_ms"][q] for run in runs), 1) for q in ("p50", "p95", "p99")},
        "max": max(run["latency_ms"]["max"] for run in runs),
        "mean": round(sum(run["latency_ms"]["mean"] * run["requests"] for run in runs) / answered, 1),
    }


def runs_answers(runs: list[dict]) -> dict:
    merged = Counter()
    for run in runs:
        merged.update(run["answers"])
    return dict(merged)


def ceiling(
    *, url: str, sku: str, gate_copy: int, rounds: int, duration: float, concurrency: int, count: int, cpus: str
) -> dict:
    """Checkout requests/s against /healthz requests/s, same process, same
    middleware; and, as the reference, a bare view making only the checkout
    script's round trip (bench/bare.py). Checkout is capped at `count`
    requests a round (its keys), the bare view at ten times that."""
    runs = wrk_paired_rounds(
        {
            "healthz": lambda r: HEALTHZ_WRK,
            "checkout": lambda r: checkout_wrk(sku, f"ceil{r}", count),
            "bare": lambda r: bare_wrk(gate_copy, f"bare{r}", 10 * count),
        },
        url=url,
        rounds=rounds,
        connections=concurrency,
        seconds=duration,
        ok={"healthz": "200", "checkout": "202", "bare": "202"},
        cpus=cpus,
    )
    pairs = [c / h for c, h in zip(runs["checkout"]["rates"], runs["healthz"]["rates"], strict=False) if h]
    bare_pairs = [b / h for b, h in zip(runs["bare"]["rates"], runs["healthz"]["rates"], strict=False) if h]
    return {
        "load_generator": f"wrk on CPUs {cpus}",
        "bare_rps_rounds": [round(x, 1) for x in runs["bare"]["rates"]],
        "bare_rps": round(statistics.median(runs["bare"]["rates"]), 1),
        "bare_ratio": _median(bare_pairs),
        "bare_answers": runs_answers(runs["bare"]["runs"]),
        "concurrency": concurrency,
        "round_seconds": duration,
        "healthz_rps_rounds": [round(x, 1) for x in runs["healthz"]["rates"]],
        "checkout_rps_rounds": [round(x, 1) for x in runs["checkout"]["rates"]],
        "ratio_rounds": [round(x, 3) for x in pairs],
        "ceiling_ratio": _median(pairs),
        "healthz_rps": round(statistics.median(runs["healthz"]["rates"]), 1),
        "checkout_rps": round(statistics.median(runs["checkout"]["rates"]), 1),
        "healthz_latency_ms": runs_latency_ms(runs["healthz"]["runs"]),
        "checkout_latency_ms": runs_latency_ms(runs["checkout"]["runs"]),
        "checkout_answers": runs_answers(runs["checkout"]["runs"]),
        "healthz_answers": runs_answers(runs["healthz"]["runs"]),
    }


def design(
    *,
    url: str,
    sku: str,
    naive_sku: str,
    rounds: int,
    duration: float,
    concurrency: int,
    counts: dict,
    cpus: str,
    tag: str = "design",
    first_round: int = 0,
) -> dict:
    """Orders/s of our checkout against the naive design, many buyers on one
    product; `counts` caps each side's requests a round (their keys)."""
    # Imported here: bench/naive.py imports the app's models, which need
    # Django set up, and this module is imported before that.
    from .naive import naive_requests_wait

    runs = wrk_paired_rounds(
        {
            "ours": lambda r: checkout_wrk(sku, f"{tag}-ours{r}", counts["ours"]),
            "naive": lambda r: naive_wrk(naive_sku, f"{tag}-naive{r}", counts["naive"]),
        },
        url=url,
        rounds=rounds,
        connections=concurrency,
        seconds=duration,
        ok={"ours": "202", "naive": "202"},
        cpus=cpus,
        first_round=first_round,
        # wrk stops at its duration and closes its connections, but the naive
        # requests it leaves behind go on queueing on the stock row's lock in
        # the server's threads: the next side would find every thread taken.
        settle={"naive": naive_requests_wait},
    )
    pairs = [o / n for o, n in zip(runs["ours"]["rates"], runs["naive"]["rates"], strict=False) if n]
    naive_answers = runs_answers(runs["naive"]["runs"])
    return {
        "load_generator": f"wrk on CPUs {cpus}",
        "concurrency": concurrency,
        "round_seconds": duration,
        "ours_orders_per_s_rounds": [round(x, 1) for x in runs["ours"]["rates"]],
        "naive_orders_per_s_rounds": [round(x, 1) for x in runs["naive"]["rates"]],
        "ratio_rounds": [round(x, 2) for x in pairs],
        "design_ratio": _median(pairs),
        "ours_orders_per_s": round(statistics.median(runs["ours"]["rates"]), 1),
        "naive_orders_per_s": round(statistics.median(runs["naive"]["rates"]), 1),
        # Of every answer (wrk keeps no per-answer latency): a refused
        # checkout's answer counts too.
        "ours_latency_ms": runs_latency_ms(runs["ours"]["runs"]),
        "naive_latency_ms": runs_latency_ms(runs["naive"]["runs"]),
        "ours_answers": runs_answers(runs["ours"]["runs"]),
        "naive_answers": naive_answers,
        "naive_errors": {
            "lock_wait_timeout": sum(v for k, v in naive_answers.items() if "lock_wait_timeout" in k),
            "deadlock": sum(v for k, v in naive_answers.items() if "deadlock" in k),
            "other": sum(
                v
                for k, v in naive_answers.items()
                if not k.startswith("202") and "lock" not in k and "deadlock" not in k
            ),
        },
    }


# --- fulfilment drain (workers only, no HTTP)


def broker_idle_wait(*, timeout: float) -> float:
    """Until the workers' queues are (nearly) empty, so a phase that starts on
    a backlog does not measure the previous phase. Returns the seconds waited."""
    from django.conf import settings

    from apps.stock.overload import broker_queue_depth

    started = time.monotonic()
    # Beat adds a persistence task every second, so "idle" allows a couple queued.
    while (
        sum(broker_queue_depth(queue.name) for queue in settings.CELERY_TASK_QUEUES) > 2
        and time.monotonic() - started < timeout
    ):
        time.sleep(0.2)
    return round(time.monotonic() - started, 1)


def persisted_wait(*, product_id: int, timeout: float) -> None:
    """Until every queued reservation of the product is a database order."""
    from apps.stock.redis import stock_redis
    from apps.stock.redis_keys import persist_queue_key

    deadline = time.monotonic() + timeout
    while stock_redis().llen(persist_queue_key(product_id)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"reservations of product {product_id} not persisted after {timeout}s")
        time.sleep(0.2)


def drain(*, product_id: int, count: int, timeout: float) -> dict:
    """Keys assigned per second by the workers from a backlog of `count` paid
    orders. The orders are marked paid in one statement and fulfilment is
    requested for each, as each payment does after its commit (requests
    coalesce while a task waits); what is timed is the workers delivering
    every one of them."""
    from django.db.models import Max
    from django.utils import timezone

    from apps.orders.models import Order
    from apps.orders.services.fulfilment import fulfilment_request_on_commit

    ids = list(
        Order.objects.filter(product_id=product_id, status=Order.Status.AWAITING_PAYMENT)
        # The newest: the oldest are nearest to expiring (RESERVATION_TTL).
        .order_by("-id")
        .values_list("id", flat=True)[:count]
    )
    started = timezone.now()
    # Only orders still awaiting payment: one the expiry task took meanwhile
    # is not marked paid (and is not waited for).
    Order.objects.filter(id__in=ids, status=Order.Status.AWAITING_PAYMENT).update(
        status=Order.Status.PAID, paid_at=started
    )
    ids = list(Order.objects.filter(id__in=ids, status=Order.Status.PAID, paid_at=started).values_list("id", flat=True))
    for order_id in ids:
        fulfilment_request_on_commit(order_id=order_id)
    deadline = time.monotonic() + timeout
    orders = Order.objects.filter(id__in=ids)
    while orders.filter(status=Order.Status.DELIVERED).count() < len(ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    delivered = orders.filter(status=Order.Status.DELIVERED).count()
    last = orders.aggregate(last=Max("delivered_at"))["last"] or started
    seconds = max((last - started).total_seconds(), 1e-3)
    return {
        "orders": len(ids),
        "delivered": delivered,
        "seconds": round(seconds, 2),
        "keys_per_s": round(delivered / seconds, 1),
    }


# --- Redis headroom


def redis_headroom(*, product_id: int, requests: int, clients: int = 50) -> dict:
    """redis-benchmark sending EVALSHA of the real checkout script, with the
    arguments the app sends, on a copy of a bench product's gate (a fresh
    order number and buyer per call via __rand_int__)."""
    from django.conf import settings

    from apps.stock.redis import stock_redis
    from apps.stock.scripts import LUA_DIR
    from apps.stock.services import checkout_script_arguments

    from .bare import gate_copy_create

    if shutil.which("redis-benchmark") is None:
        raise RuntimeError("redis-benchmark is missing: apt-get install redis-tools (make system-deps does)")
    client = stock_redis()
    sha = client.script_load((LUA_DIR / "checkout.lua").read_text())
    copy = gate_copy_create(product_id=product_id)
    # The app's own call layout, with redis-benchmark's placeholder for a fresh
    # order number and buyer per call.
    keys, args = checkout_script_arguments(
        product_id=copy,
        order_no="bench-__rand_int__",
        buyers=["e:__rand_int__"],
        quantity=1,
        token_hash="0" * 64,
        email="buyer@bench.example.com",
    )
    keys, args = [str(x) for x in keys], [str(x) for x in args]
    probe = client.evalsha(sha, len(keys), *keys, *[a.replace("__rand_int__", "probe") for a in args])
    if probe[0] != b"ok":
        raise RuntimeError(f"checkout script answered {probe!r} to the headroom probe")
    redis_url = urlsplit(settings.REDIS_URL)
    argv = [
        "redis-benchmark",
        "-h",
        redis_url.hostname or "127.0.0.1",
        "-p",
        str(redis_url.port or 6379),
        "--dbnum",
        (redis_url.path or "/0").strip("/") or "0",
        "-n",
        str(requests),
        "-c",
        str(clients),
        "-r",
        "100000000",
        "--csv",
        "EVALSHA",
        sha,
        str(len(keys)),
        *keys,
        *args,
    ]
    if redis_url.hostname not in ("127.0.0.1", "localhost"):
        raise RuntimeError("redis-benchmark only runs against a local Redis")
    output = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [row for row in csv.reader(io.StringIO(output)) if row]
    header, values = rows[0], rows[-1]
    evalsha_rps = float(values[header.index("rps")])
    client.unlink(*keys)
    return {"requests": requests, "clients": clients, "evalsha_rps": round(evalsha_rps, 1)}


# --- persistence lag at a steady pace


def persist_lag_steady(*, url: str, sku: str, count: int, per_second: float) -> dict:
    """Checkouts one at a time at a steady pace, each 202's arrival against
    its order row's created_at. One connection and no crowd: the client reads
    each 202 as it is sent, so this is the persister's own lag (publish,
    worker pickup, INSERT), not the load generator's. Each order is the first
    of its "burst" here, so each publishes its own persist task."""
    import json
    import urllib.request

    from apps.orders.models import Order

    answered: dict[str, float] = {}
    for i in range(count):
        started = time.perf_counter()
        body = json.dumps({"sku": sku, "quantity": 1, "email": f"lag-{i}@bench.example.com"}).encode()
        request = urllib.request.Request(
            f"{url}/api/v1/orders", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status == 202:
                answered[json.loads(response.read())["order_no"]] = time.time()
        time.sleep(max(0.0, 1 / per_second - (time.perf_counter() - started)))
    deadline = time.monotonic() + 30
    created: dict = {}
    while time.monotonic() < deadline and len(created) < len(answered):
        created = dict(Order.objects.filter(order_no__in=list(answered)).values_list("order_no", "created_at"))
        time.sleep(0.2)
    return {
        "lag_s": [created[no].timestamp() - at for no, at in answered.items() if no in created],
        "answered": len(answered),
        "never_recorded": len(set(answered) - set(created)),
    }


# --- the flash sale, checkout through delivery


async def flash_sale(
    *, url: str, sku: str, product_id: int, buyers: int, concurrency: int, poll_seconds: float, duration: float
) -> dict:
    """B buyers arrive at once; each checks out, waits for its order to be
    placed, pays in the sandbox, and polls the order until its keys show, as
    the order page does (bench/journey.py)."""
    from apps.stock.redis import stock_redis
    from apps.stock.redis_keys import stock_key

    started, started_wall = time.perf_counter(), time.time()
    journey = Journey(
        url=url,
        sku=sku,
        deadline=started + duration,
        placed_poll_s=poll_seconds,
        paid_poll_s=poll_seconds,
        polls=[],
        checkouts=[],
        pays=[],
    )
    stock_samples: list[tuple[float, int]] = []
    done = asyncio.Event()

    async def stock_sampler():
        redis = stock_redis()
        while not done.is_set():
            stock_samples.append((time.perf_counter() - started, int(redis.get(stock_key(product_id)) or 0)))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(stock_sampler())
    async with session_new(concurrency=concurrency) as session:
        runs = await asyncio.gather(
            *(buyer_journey(session, journey, email=f"flash-{i}@bench.example.com") for i in range(buyers))
        )
    done.set()
    await sampler
    return {
        "started_wall": started_wall,
        "started": started,
        "checkouts": journey.checkouts,
        "runs": list(runs),
        "stock_samples": stock_samples,
        # Each poll (200 or 304): its share of requests and its latency.
        "polls": journey.polls,
        "pays": journey.pays,
    }


def flash_gates(*, product_id: int, keys: int, buyers: int, sale: dict, settle_timeout: float) -> dict:
    """The correctness gates, from the database and from what buyers saw."""
    from apps.cardkeys.models import CardKey
    from apps.orders.models import Order
    from apps.stock.redis import stock_redis
    from apps.stock.redis_keys import stock_key

    orders = Order.objects.filter(product_id=product_id)
    # Payment notifications still in the payments queue (or in a retry's
    # backoff) pay more orders after the buyers stop: let the queues drain,
    # then count, in one query, the paid orders that are not delivered until
    # a count finds none or the time is up. (Counting in a second query after
    # waiting for "no order in `paid`" counted the orders a late notification
    # had paid a moment before: in flight, not stuck.)
    deadline = time.monotonic() + settle_timeout
    broker_idle_wait(timeout=settle_timeout)
    # A notification waiting out a retry's backoff is held by a worker, not
    # queued: also wait until every order whose buyer's payment was answered
    # 202 is paid (or the time is up).
    runs: list[BuyerRun] = sale["runs"]
    payments_sent = [r.order_no for r in runs if r.paid_at]
    while (
        payments_sent
        and orders.filter(order_no__in=payments_sent, paid_at__isnull=True).exists()
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    # However long that took, the count has a few seconds of its own.
    deadline = max(deadline, time.monotonic() + 10)
    paid_undelivered = orders.filter(paid_at__isnull=False).exclude(status=Order.Status.DELIVERED)
    while (undelivered := paid_undelivered.count()) and time.monotonic() < deadline:
        time.sleep(0.5)
    accepted_count = sum(1 for r in runs if r.status == 202)
    sold = CardKey.objects.filter(product_id=product_id, status=CardKey.Status.SOLD).count()
    stock_left = int(stock_redis().get(stock_key(product_id)) or 0)
    seen = Counter(key for r in runs for key in r.keys)
    delivered = orders.filter(status=Order.Status.DELIVERED)
    expected = min(keys, buyers)
    short_keys = sum(1 for r in runs if r.final_status == "delivered" and len(r.keys) != 1)
    timings = list(delivered.values_list("paid_at", "delivered_at"))
    # The window a Redis that loses its data (a failover to an empty replica,
    # FLUSHALL) would cost: from the buyer's 202 to the persister's row. The
    # row's created_at is taken just before its INSERT; same clock (one host).
    answered = {r.order_no: r.accepted_wall for r in runs if r.status == 202}
    created = dict(orders.filter(order_no__in=list(answered)).values_list("order_no", "created_at"))
    return {
        "persist_lag_s": [created[no].timestamp() - at for no, at in answered.items() if no in created],
        "answered_never_recorded": len(set(answered) - set(created)),
        "oversold": max(0, accepted_count - keys) + max(0, sold - keys) + max(0, -stock_left),
        "duplicates": sum(n - 1 for n in seen.values() if n > 1) + short_keys,
        "paid_undelivered": undelivered,
        "accepted": accepted_count,
        "sold": sold,
        "delivered": delivered.count(),
        "expected_sold": expected,
        "sold_equals_min_keys_demand": sold == expected and delivered.count() == expected,
        "buyers_who_saw_keys": sum(1 for r in runs if r.keys),
        "redis_stock_left": stock_left,
        "paid_to_delivered_s": [(d - p).total_seconds() for p, d in timings if p and d],
        "delivered_at": [d.timestamp() for _, d in timings if d],
    }
