"""wrk, the C load generator, for the throughput phases (ceiling, design,
server comparison, scaling slope): one run of one request shape, pinned to
given CPUs with taskset, its answers and latency read back from the Lua
script's one JSON line (bench/wrk/requests.lua). The asyncio generator
(bench/load.py) stays for the flash sale's buyer journeys, which wrk cannot
script."""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "wrk" / "requests.lua"
RESULT_MARK = "WRK_RESULT "
# Stands for the buyer in a body template; the Lua script puts tag-thread-counter there.
BUYER = "@@BUYER@@"

# CPU seconds of every wrk run that has ended in this process (from the
# kernel's accounting of the reaped child), so a CpuMeter over a phase can
# count the load generator's CPU although each wrk process is gone by the
# phase's end.
_finished_cpu_seconds = 0.0


def wrk_cpu_seconds() -> float:
    """CPU seconds used by the wrk runs of this process so far."""
    return _finished_cpu_seconds


@dataclass(frozen=True)
class WrkRequest:
    """One request shape: `method path`, with a JSON body template in which
    BUYER is replaced by a distinct buyer per request (tag-thread-counter).
    `cap` bounds the requests sent (0: none), split across wrk's threads."""

    path: str
    method: str = "GET"
    body: str = ""
    tag: str = ""
    cap: int = 0


def buyer_body(fields: dict) -> str:
    """A JSON body whose "email" is a distinct bench buyer per request."""
    return json.dumps({**fields, "email": f"{BUYER}@bench.example.com"}, separators=(",", ":"))


def wrk_command(*, url: str, request: WrkRequest, seconds: float, connections: int, threads: int, cpus: str) -> list:
    before, _, after = request.body.partition(BUYER)
    if request.body and not request.tag:
        raise ValueError("a request with a buyer body needs a tag (distinct buyers across runs)")
    return [
        *(["taskset", "-c", cpus] if cpus else []),
        "wrk",
        "--threads",
        str(threads),
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        # The naive design's answers take seconds under contention on one core:
        # wrk's default (2 s) would count them as timeouts.
        "--timeout",
        "30s",
        "--script",
        str(SCRIPT),
        url.rstrip("/") + request.path,
        "--",
        request.method,
        request.path,
        str(request.cap),
        str(threads),
        request.tag or "-",
        before,
        after,
    ]


def wrk_run(
    *, url: str, request: WrkRequest, seconds: float, connections: int, cpus: str = "", threads: int = 0
) -> dict:
    """Run wrk once. `cpus` is a taskset list ("0", "0-1"; empty: not pinned);
    `threads` defaults to one per CPU of that list. Returns wrk_summary()'s dict
    plus "cpu_seconds" (wrk's own user + system time)."""
    global _finished_cpu_seconds
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is missing: apt-get install wrk (make system-deps does)")
    threads = threads or max(1, len(cpu_list(cpus)) if cpus else 1)
    threads = min(threads, connections)
    argv = wrk_command(url=url, request=request, seconds=seconds, connections=connections, threads=threads, cpus=cpus)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.stdout.read(), process.stderr.read()
    # Reaped here rather than by Popen.wait: wait4 also returns the child's CPU time.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu_seconds = usage.ru_utime + usage.ru_stime
    _finished_cpu_seconds += cpu_seconds
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited {process.returncode}: {stderr.strip() or stdout.strip()}")
    return {**wrk_summary(stdout), "cpu_seconds": round(cpu_seconds, 3)}


def wrk_summary(stdout: str) -> dict:
    """The Lua script's JSON line as the phases use it: requests answered,
    seconds (first request sent to last answer, over all threads: a thread
    that reached its cap stops early, while wrk itself runs out its
    duration), answers by "status" or "status error" (connection errors and
    timeouts as "0 <kind>", as bench/load.py counts them), latency in ms."""
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARK)]
    if not lines:
        raise RuntimeError(f"wrk printed no result line (is bench/wrk/requests.lua its script?): {stdout[-500:]}")
    raw = json.loads(lines[-1][len(RESULT_MARK) :])
    threads = [t for t in raw["threads"] if t["answered"]]
    seconds = (
        max(t["last_answer"] for t in threads) - min(t["first_sent"] for t in threads)
        if threads
        else raw["duration_us"] / 1e6
    )
    answers: dict[str, int] = {}
    for thread in raw["threads"]:
        for key, count in (thread["answers"] or {}).items():
            answers[key] = answers.get(key, 0) + int(count)
    for kind in ("connect", "read", "write", "timeout"):
        if raw["errors"].get(kind):
            answers[f"0 {kind}"] = answers.get(f"0 {kind}", 0) + int(raw["errors"][kind])
    latency = raw["latency_us"]
    return {
        "requests": int(raw["requests"]),
        "sent": sum(int(t["sent"]) for t in raw["threads"]),
        "seconds": round(max(seconds, 1e-3), 3),
        "answers": answers,
        "latency_ms": {name: round(float(latency[name]) / 1000, 1) for name in ("p50", "p95", "p99", "max", "mean")},
    }


def accepted_rate(run: dict, *, status: str) -> float:
    """Answers of one status ("202", "200") per second of the run."""
    count = sum(n for key, n in run["answers"].items() if key.split(" ", 1)[0] == status)
    return count / run["seconds"] if run["seconds"] else 0.0


def cpu_list(cpus: str) -> list[int]:
    """The CPUs of a taskset list: "0", "0-1", "0,2-3"."""
    result = []
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        result += range(int(low), int(high or low) + 1)
    return result
