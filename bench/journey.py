"""One buyer's journey, as a browser takes it: checkout, the order page's
polls until the order is placed, the sandbox payment, the polls until the
keys show. Shared by the flash sale (everyone at once) and the sustained
phase (a fixed arrival rate), so both measure the same buyer."""

import asyncio
import math
import random
import time
from dataclasses import dataclass

import aiohttp

from .load import PoolWait, Sample, post_json

TERMINAL = ("delivered", "needs_attention", "refund_pending", "refunded", "expired")


@dataclass
class BuyerRun:
    status: int
    error: str = ""
    order_no: str = ""
    sent_at: float = 0.0  # time.perf_counter() when the checkout was sent
    sent_wall: float = 0.0  # the same as time.time(), against the database's delivered_at
    accepted_at: float = 0.0
    accepted_wall: float = 0.0  # time.time() of the 202, against the order row's created_at
    paid_at: float = 0.0
    keys_at: float = 0.0
    keys: tuple = ()
    final_status: str = ""


@dataclass(frozen=True)
class Journey:
    """Where the buyers go and how they poll. `placed_poll_s` / `paid_poll_s`:
    the wait before the first poll after checkout / after paying, until the
    server has given its own poll_after_ms."""

    url: str
    sku: str
    deadline: float  # time.perf_counter() after which nobody polls any more
    placed_poll_s: float
    paid_poll_s: float
    polls: list  # every poll's Sample (200 or 304), appended as they answer
    checkouts: list  # every checkout's Sample
    pays: list  # every pay request's Sample (a retry after a 503 is one more)


async def order_poll(session, journey: Journey, run: BuyerRun, headers: dict, until, first_wait: float) -> dict:
    """As static/orders/order.js polls: the last ETag in If-None-Match (an
    unchanged order answers 304 from Redis), the server's poll_after_ms /
    Retry-After stretched ×1.5 per unchanged answer (up to 3×, and to 20 s
    unless the server asks for more), ±20 % jitter; `first_wait` until the
    server has spoken. Returns the first body `until` accepts ({} at the deadline)."""
    etag, hint, unchanged, last = None, first_wait, 0, None
    while time.perf_counter() < journey.deadline:
        stretched = max(hint, min(20.0, hint * min(3.0, 1.5**unchanged)))
        await asyncio.sleep(min(60.0, stretched) * random.uniform(0.8, 1.2))
        sent, pool_wait = time.perf_counter(), PoolWait()
        try:
            async with session.get(
                f"{journey.url}/api/v1/orders/{run.order_no}",
                headers={**headers, **({"If-None-Match": etag} if etag else {})},
                trace_request_ctx=pool_wait,
            ) as response:
                status = response.status
                body = await response.json(content_type=None) if status == 200 else {}
                etag = response.headers.get("ETag", etag)
                retry_after = response.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            continue
        journey.polls.append(Sample(sent, time.perf_counter() - sent, status, "", pool_wait.total()))
        if status == 304:
            unchanged += 1
            if retry_after and retry_after.isdigit() and int(retry_after) != max(1, math.ceil(hint)):
                hint = int(retry_after)
            continue
        if status != 200 or not isinstance(body, dict):
            continue
        unchanged = unchanged + 1 if body.get("status") == last else 0
        last = body.get("status")
        if isinstance(body.get("poll_after_ms"), int):
            hint = body["poll_after_ms"] / 1000
        if until(body):
            return body
    return {}


async def sandbox_pay(session, journey: Journey, run: BuyerRun, headers: dict) -> bool:
    """The sandbox's pay button; a 503 while the sandbox is failing says to retry."""
    for _ in range(5):
        sent, pool_wait = time.perf_counter(), PoolWait()
        try:
            status, _body = await post_json(
                session, f"{journey.url}/api/v1/payments/sandbox/{run.order_no}/pay", {}, headers, pool_wait=pool_wait
            )
        except (TimeoutError, aiohttp.ClientError, OSError):
            status = 0
        journey.pays.append(Sample(sent, time.perf_counter() - sent, status, "", pool_wait.total()))
        if status == 202:
            run.paid_at = time.perf_counter()
            return True
        await asyncio.sleep(1)
    return False


async def buyer_journey(session, journey: Journey, *, email: str) -> BuyerRun:
    """Checkout, wait until placed, pay at once, wait for the keys."""
    sent, sent_wall, pool_wait = time.perf_counter(), time.time(), PoolWait()
    try:
        status, body = await post_json(
            session,
            f"{journey.url}/api/v1/orders",
            {"sku": journey.sku, "quantity": 1, "email": email},
            pool_wait=pool_wait,
        )
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        status, body = 0, {"error": type(exc).__name__}
    journey.checkouts.append(Sample(sent, time.perf_counter() - sent, status, body.get("error", ""), pool_wait.total()))
    run = BuyerRun(
        status=status,
        error=body.get("error", ""),
        order_no=body.get("order_no", ""),
        sent_at=sent,
        sent_wall=sent_wall,
    )
    if status != 202:
        return run
    run.accepted_at, run.accepted_wall = time.perf_counter(), time.time()
    headers = {"X-Order-Token": body["access_token"]}
    placed = await order_poll(
        session, journey, run, headers, lambda b: b.get("status") != "queued", journey.placed_poll_s
    )
    if not placed or not await sandbox_pay(session, journey, run, headers):
        return run
    final = await order_poll(session, journey, run, headers, lambda b: b.get("status") in TERMINAL, journey.paid_poll_s)
    run.final_status = final.get("status", "")
    run.keys = tuple(final.get("keys") or ())
    run.keys_at = time.perf_counter()
    return run
