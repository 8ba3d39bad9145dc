"""A tiny run of the flash-sale benchmark (bench/flash_sale.py --smoke):
real gunicorn, Celery and beat on their own database and Redis prefix, and
the web server comparison against Granian. It asserts the correctness gates
only, never a timing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_tools_are_installed():
    """make test installs requirements-bench.txt (make bench-deps); without it
    the smoke run below could not start."""
    import aiohttp  # noqa: F401
    import matplotlib  # noqa: F401
    import psutil  # noqa: F401


@pytest.mark.timeout(330)
def test_quick_flash_sale_never_oversells_duplicates_or_strands_a_paid_order(tmp_path):
    # Names derived from this run's test names, so parallel runs do not collide.
    database = os.environ.get("TEST_DATABASE_NAME", "test_cardshop") + "_benchsmoke"
    prefix = os.environ.get("TEST_REDIS_KEY_PREFIX", "cardshop-test") + "-benchsmoke"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.flash_sale",
            "--smoke",
            "--database",
            database,
            "--prefix",
            prefix,
            "--out",
            str(tmp_path),
            # The web server comparison's path, at its smallest (make bench --servers).
            "--servers",
            "gunicorn,granian:1x4",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    gates = result["flash"]["gates"]
    assert (result["oversold"], result["duplicates"], result["paid_undelivered"]) == (0, 0, 0), gates
    assert gates["sold"] == gates["delivered"] == gates["expected_sold"] == 60, gates
    assert gates["buyers_who_saw_keys"] == 60, gates
    for field in (
        "ceiling_ratio",
        "design_ratio",
        "drain_ratio",
        "redis_headroom",
        "checkout_rps",
        "checkout_p99_ms",
        "paid_to_delivered_p95_ms",
    ):
        assert result[field] > 0, field
    # The throughput phases ran on wrk; the scaling slope (server restarts on
    # 1 and 2 cores) belongs to the full run only.
    assert result["ceiling"]["load_generator"].startswith("wrk") and result["ceiling"]["cpu"]["loadgen"] > 0
    assert result["slope"] == {"skipped": "smoke run"} and result["slope_ours"] is None
    # The flash phase times each request on the wire and from arrival (the
    # latter adds the wait for one of the generator's connections).
    flash = result["flash"]
    for wire, arrival in (
        (flash["checkout_latency_ms"], flash["checkout_latency_from_arrival_ms"]),
        (flash["polls"]["latency_ms"], flash["polls"]["latency_from_arrival_ms"]),
        (flash["pay_latency_ms"], flash["pay_latency_from_arrival_ms"]),
    ):
        assert 0 < wire["p50"] <= arrival["p50"] and wire["p99"] <= arrival["p99"], (wire, arrival)
    assert 0 < flash["polls"]["share_of_requests"] < 1, flash["polls"]
    assert "flash checkout latency on the wire" in (tmp_path / "latest.md").read_text()
    table = {row["label"]: row for row in result["servers"]["table"]}
    assert set(table) == {"gunicorn 2×16", "granian 1×4"}, table
    for row in table.values():
        assert row["checkout_rps"] > 0 and row["healthz_rps"] > 0 and row["checkout_latency_ms"]["p99"] > 0, row
    assert table["gunicorn 2×16"]["checkout_rps_ratio"] == 1.0
    assert "## Web server comparison" in (tmp_path / "latest.md").read_text()
    assert {
        "checkout_latency.png",
        "orders_per_second.png",
        "stock_draining.png",
        "paid_to_delivered.png",
        "sustained.png",
    } <= set(os.listdir(tmp_path))
    # Sustained end to end: the smoke plan's 2 s at most 10 buyers/s, every buyer paying at once.
    sustained = result["sustained"]
    assert (
        sustained["gates"]["oversold"],
        sustained["gates"]["duplicates"],
        sustained["gates"]["paid_undelivered"],
    ) == (0, 0, 0), sustained["gates"]
    arrivals = sustained["arrivals"]
    assert arrivals["scheduled"] == arrivals["started"] >= 2, arrivals
    assert sustained["buyers_with_keys"] == sustained["delivered_total"] == arrivals["scheduled"], sustained
    for figure in ("delivered_per_s", "keys"):
        assert sustained[figure] > 0, figure
    assert sustained["time_to_keys_ms"]["p99"] > sustained["checkout_latency_ms"]["p50"] > 0, sustained
    assert sum(sustained["timeline"]["arrivals_per_s"]) == arrivals["scheduled"], sustained["timeline"]
    assert "## Sustained end to end" in (tmp_path / "latest.md").read_text()
