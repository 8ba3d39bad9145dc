"""deploy/prometheus/alerts.yml is valid and its rules fire when they should
(promtool, from Debian's prometheus package)."""

import shutil
import subprocess
from pathlib import Path

import pytest

RULES_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: install Debian's prometheus package "
            "(scripts/ensure_system_packages.sh --browser, which `make test` runs)"
        )
    return path


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


def test_the_alert_rules_are_valid(promtool):
    result = _run(promtool, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alert_rules_pass_their_unit_tests(promtool):
    """Paid-undelivered, checkout failure rate, low stock, missing beat and the replica out of use,
    each with a case that fires and one that must not."""
    result = _run(promtool, "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_issue_s_alerts_are_all_there():
    text = (RULES_DIR / "alerts.yml").read_text()
    for name in (
        "StockLow",
        "CheckoutFailureRateHigh",
        "CheckoutLatencyHigh",
        "PaidOrderUndelivered",
        "StockDriftRepaired",
        "CeleryWorkerDown",
        "NoCeleryWorker",
        "CeleryBeatMissing",
    ):
        assert f"alert: {name}\n" in text, name
