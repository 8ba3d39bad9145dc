"""bench/sustained.py's search for the rate the shop sustains end to end:
each run at half the rate of the one before, stopping at the first that
meets both targets (or after the plan's steps)."""

import pytest

from bench import sustained
from bench.sustained import SustainedPlan, sustainable_rate_search

GATES = {"oversold": 0, "duplicates": 0, "paid_undelivered": 0}


def _runs_meeting_at_or_below(limit: float, tried: list):
    def run_at(stack, *, sku, rate, seconds, grace, concurrency, meter):
        tried.append((sku, rate, seconds, grace))
        met = rate <= limit
        figures = {
            "arrival_rate_per_s": rate,
            "delivered_share_of_rate": 1.0 if met else 0.3,
            "delivered_share_met": met,
            "time_to_keys_met": met,
            "time_to_keys_ms": {"p50": 2000.0, "p99": 2600.0 if met else 20000.0},
            "buyers_without_keys": 0,
            "polls": {"per_buyer": 2.0},
            "cpu": {"web": 50.0},
            "gates": GATES,
        }
        return figures, {}

    return run_at


@pytest.mark.parametrize(
    ("limit", "expected_rates", "found"),
    [
        (30.0, [100.0, 50.0, 25.0], 25.0),  # met on the third run
        (100.0, [100.0], 100.0),  # the first run meets them: no more runs
        (5.0, [100.0, 50.0, 25.0], None),  # three steps, none met
    ],
)
def test_search_halves_the_rate_until_both_targets_are_met(monkeypatch, limit, expected_rates, found):
    tried = []
    monkeypatch.setattr(sustained, "run_at", _runs_meeting_at_or_below(limit, tried))
    plan = SustainedPlan(search_steps=3, search_seconds=20.0, search_grace=15.0)

    result = sustainable_rate_search(None, plan, first_rate=100.0, checkout_rps=400.0, concurrency=200, meter=None)

    assert [rate for _sku, rate, _s, _g in tried] == expected_rates
    assert len({sku for sku, *_ in tried}) == len(tried)  # a product of its own for each run
    assert all((seconds, grace) == (20.0, 15.0) for _sku, _rate, seconds, grace in tried)
    assert result["sustained_rate_per_s"] == found
    assert result["sustained_share_of_ceiling"] == (round(found / 400.0, 3) if found else None)
    assert [step["met"] for step in result["steps"]] == [rate <= limit for rate in expected_rates]
