"""Where gunicorn's time goes under checkout load: py-spy samples every web
process during a checkout burst; the frames are ranked by the share of
samples they appear in (inclusive time)."""

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from .load import closed_loop, session_new
from .phases import checkout_request


def profile_under_load(
    stack, *, sku: str, seconds: float, concurrency: int, count: int, out: Path, top: int = 30
) -> list:
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "profile-checkout.txt"
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(stack.web.pid),
            "--subprocesses",
            "--duration",
            str(int(seconds) + 1),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # py-spy attaches to every worker

    async def burst():
        async with session_new(concurrency=concurrency) as session:
            await closed_loop(
                session,
                checkout_request(stack.url, sku, "profile"),
                concurrency=concurrency,
                count=count,
                duration=seconds,
            )

    asyncio.run(burst())
    spy.wait(timeout=60)
    return frames_ranked(raw.read_text(), top=top)


def frames_ranked(collapsed: str, *, top: int) -> list[tuple[str, float]]:
    """Inclusive share (%) of each frame in py-spy's collapsed stacks ("a;b;c count")."""
    inclusive: Counter = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] += int(count)
    return [(frame, round(100 * n / total, 1)) for frame, n in inclusive.most_common(top)] if total else []
