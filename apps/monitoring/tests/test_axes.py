"""The dashboard charts' axes: round 1-2-5 ticks, and time labels at round
minutes of the shop's clock."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.monitoring.axes import nice_ticks, shop_clock, time_ticks


@pytest.mark.parametrize(
    ("values", "integer", "expected"),
    [
        ([47, 30, None, 12], True, [0, 10, 20, 30, 40, 50]),
        ([7, 3, 0], True, [0, 2, 4, 6, 8]),
        ([3.7, 1.2], False, [0, 1, 2, 3, 4]),
        ([14.6], False, [0, 5, 10, 15]),
        ([100], False, [0, 20, 40, 60, 80, 100]),
        ([0.73, 0.2], False, [0, 0.2, 0.4, 0.6, 0.8]),
        ([0.03], False, [0, 0.01, 0.02, 0.03]),
        ([1234], True, [0, 500, 1000, 1500]),
        ([2], True, [0, 1, 2]),
        ([0.4], True, [0, 1]),  # counts never get a fractional step
        ([], True, [0, 1]),
        ([None, None], False, [0, 0.2, 0.4, 0.6, 0.8, 1]),
        ([0, 0], True, [0, 1]),
        ([-3, 8], True, [-5, 0, 5, 10]),
    ],
)
def test_ticks(values, integer, expected):
    assert nice_ticks(values, integer=integer) == expected


@pytest.mark.parametrize("high", [0.013, 0.7, 1, 3.3, 7.3, 9.99, 14.6, 29.2, 51, 99, 101, 777, 12345, 98765.4])
def test_ticks_are_round_steps_that_cover_the_data(high):
    ticks = nice_ticks([high, high / 3])
    assert ticks[0] == 0 and ticks[-1] >= high
    assert 3 <= len(ticks) <= 6
    steps = {Decimal(str(b)) - Decimal(str(a)) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1, ticks  # evenly spaced
    step = steps.pop()
    assert step.normalize().as_tuple().digits in ((1,), (2,), (5,)), (high, ticks)
    assert ticks[-1] - float(step) < high  # no empty band on top


def test_ticks_carry_no_float_noise():
    ticks = nice_ticks([0.3])
    assert ticks == [0, 0.1, 0.2, 0.3]
    assert [str(t) for t in ticks] == ["0", "0.1", "0.2", "0.3"]


def test_time_labels_fall_on_round_minutes_of_the_shops_clock(settings):
    """The labels read the shop's clock (Asia/Kathmandu is UTC+5:45)."""
    settings.TIME_ZONE = "Asia/Kathmandu"
    start = datetime(2026, 11, 29, 2, 2, tzinfo=UTC)  # 07:47 in Kathmandu
    moments = [start + timedelta(minutes=m) for m in range(12)]
    assert time_ticks(moments) == [3, 8]
    assert [shop_clock(moments[i]) for i in time_ticks(moments)] == ["07:50", "07:55"]
    settings.TIME_ZONE = "UTC"
    assert [shop_clock(moments[i]) for i in time_ticks(moments)] == ["02:05", "02:10"]
    settings.TIME_ZONE = "Asia/Shanghai"
    assert shop_clock(start + timedelta(minutes=3, seconds=7), "%H:%M:%S") == "10:05:07"
