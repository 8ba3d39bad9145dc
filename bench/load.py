"""The asyncio HTTP load generator: closed-loop virtual clients, bounded in
requests and in time, recording every answer."""

import asyncio
import itertools
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

# A request function sends request number i and returns (HTTP status, error code or "").
RequestFn = Callable[[aiohttp.ClientSession, int], Awaitable[tuple[int, str]]]


@dataclass(frozen=True)
class Sample:
    start: float  # time.perf_counter() when sent
    latency: float  # seconds
    status: int  # 0: no HTTP answer (connection error, timeout)
    error: str = ""
    # Seconds of `latency` spent waiting for one of the session's connections
    # (PoolWait): the load generator's own queue, not the server's.
    pool_wait: float = 0.0

    @property
    def wire_latency(self) -> float:
        """From the moment the request had its connection to the answer: what a
        buyer with a connection of their own would wait."""
        return self.latency - self.pool_wait


@dataclass
class PoolWait:
    """Filled in by the session's tracing for one request: the time it waited
    for a connection because all `concurrency` were busy. aiohttp signals
    on_connection_queued_start/end only then (a free pooled connection is
    reused at once, a new one is opened below the limit), and may queue a
    request more than once: the intervals add up."""

    seconds: float = 0.0
    queued_since: float | None = None

    def total(self) -> float:
        """Including a wait still open (a request that failed while queued)."""
        still = time.perf_counter() - self.queued_since if self.queued_since is not None else 0.0
        return self.seconds + still


def _pool_wait_tracing() -> aiohttp.TraceConfig:
    """Times each request's wait for a pooled connection into the PoolWait
    passed as its trace_request_ctx (requests without one are not timed)."""

    async def queued_start(session, context, params):
        if isinstance(context.trace_request_ctx, PoolWait):
            context.trace_request_ctx.queued_since = time.perf_counter()

    async def queued_end(session, context, params):
        wait = context.trace_request_ctx
        if isinstance(wait, PoolWait) and wait.queued_since is not None:
            wait.seconds += time.perf_counter() - wait.queued_since
            wait.queued_since = None

    tracing = aiohttp.TraceConfig()
    tracing.on_connection_queued_start.append(queued_start)
    tracing.on_connection_queued_end.append(queued_end)
    return tracing


def session_new(*, concurrency: int, timeout: float = 30) -> aiohttp.ClientSession:
    """`timeout` bounds opening a connection and each read, not the wait for
    one of the `concurrency` connections: that queue is the generator's own
    (a crowd larger than the pool waits in it for as long as the server takes
    to answer those ahead), and a request must not fail for it."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=timeout, sock_read=timeout),
        trace_configs=[_pool_wait_tracing()],
    )


async def closed_loop(
    session: aiohttp.ClientSession, request: RequestFn, *, concurrency: int, count: int, duration: float
) -> list[Sample]:
    """`concurrency` clients, each sending its next request as soon as the last
    one is answered, until `count` requests were sent or `duration` seconds passed."""
    numbers = itertools.count()
    deadline = time.perf_counter() + duration
    samples: list[Sample] = []

    async def client():
        while time.perf_counter() < deadline:
            i = next(numbers)
            if i >= count:
                return
            started = time.perf_counter()
            try:
                status, error = await request(session, i)
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, error = 0, type(exc).__name__
            samples.append(Sample(started, time.perf_counter() - started, status, error))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return samples


async def post_json(
    session: aiohttp.ClientSession, url: str, body: dict, headers: dict | None = None, pool_wait: PoolWait | None = None
) -> tuple[int, dict]:
    async with session.post(url, json=body, headers=headers, trace_request_ctx=pool_wait) as response:
        return response.status, await _json(response)


async def get_json(session: aiohttp.ClientSession, url: str, headers: dict | None = None) -> tuple[int, dict]:
    async with session.get(url, headers=headers) as response:
        return response.status, await _json(response)


async def _json(response: aiohttp.ClientResponse) -> dict:
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# --- summaries


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def rate(samples: list[Sample], *, ok: Callable[[Sample], bool] = lambda s: True) -> float:
    """Answers per second (those `ok` accepts) over the span of the run."""
    if not samples:
        return 0.0
    span = max(s.start + s.latency for s in samples) - min(s.start for s in samples)
    return sum(1 for s in samples if ok(s)) / span if span > 0 else 0.0


def latency_ms(samples: list[Sample]) -> dict:
    """From the request's start, waiting for a connection included."""
    return _latency_summary([s.latency * 1000 for s in samples])


def wire_latency_ms(samples: list[Sample]) -> dict:
    """From the moment each request had its connection (Sample.wire_latency)."""
    return _latency_summary([s.wire_latency * 1000 for s in samples])


def _latency_summary(values: list[float]) -> dict:
    return {
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1) if values else 0.0,
        "mean": round(sum(values) / len(values), 1) if values else 0.0,
    }


def answers(samples: list[Sample]) -> dict:
    """Count of answers by "status" or "status error"."""
    return dict(Counter(f"{s.status} {s.error}".strip() for s in samples))
