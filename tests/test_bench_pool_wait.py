"""bench/load.py times each request's wait for one of the load generator's
connections (aiohttp's connection-queue tracing), so the flash phase can
report latency on the wire beside latency from arrival."""

import asyncio
import time

from aiohttp import web

from bench.load import PoolWait, Sample, post_json, session_new, wire_latency_ms

ANSWER_SECONDS = 0.2


async def _two_requests_on_one_connection() -> list[Sample]:
    async def slow(request):
        await asyncio.sleep(ANSWER_SECONDS)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    samples = []
    try:
        async with session_new(concurrency=1) as session:

            async def send():
                sent, wait = time.perf_counter(), PoolWait()
                status, _ = await post_json(session, f"http://127.0.0.1:{port}/", {}, pool_wait=wait)
                samples.append(Sample(sent, time.perf_counter() - sent, status, "", wait.total()))

            await asyncio.gather(send(), send())
    finally:
        await runner.cleanup()
    return sorted(samples, key=lambda s: s.latency)


def test_the_second_request_on_a_one_connection_pool_waited_for_the_first():
    first, second = asyncio.run(_two_requests_on_one_connection())
    assert (first.status, second.status) == (200, 200)
    assert first.pool_wait == 0.0
    # It waited about as long as the first took to answer; on the wire, both took about the same.
    assert second.pool_wait >= ANSWER_SECONDS * 0.9
    assert second.latency >= 2 * ANSWER_SECONDS * 0.9
    assert ANSWER_SECONDS * 0.9 <= second.wire_latency < second.latency - ANSWER_SECONDS * 0.9
    assert wire_latency_ms([first, second])["max"] < second.latency * 1000
