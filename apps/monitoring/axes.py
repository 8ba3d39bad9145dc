"""Chart axes a person reads at a glance: ticks at round numbers (steps of 1,
2 or 5 times a power of ten: 0, 20, 40, not 0, 14.6, 29.2), and time marks at
round minutes of the shop's clock (settings.TIME_ZONE), whatever the timezone
of the browser that draws them."""

from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.utils import timezone

STEP_FACTORS = (1, 2, 5)


def nice_ticks(values: Iterable[float | int | None], *, max_ticks: int = 6, integer: bool = False) -> list[int | float]:
    """Tick values from 0 (or below, for negative data) up to at least the
    largest value: evenly spaced by 1, 2 or 5 × 10^k, at most max_ticks of
    them. `integer` keeps the step whole (counts: no 2.5 orders). No data,
    or only zeros: 0 and 1."""
    present = [Decimal(str(v)) for v in values if v is not None]
    low = min([Decimal(0), *present])
    high = max([Decimal(0), *present])
    if high == low:
        high = low + 1
    step = _step(span=high - low, intervals=max(max_ticks - 1, 1), integer=integer)
    first = (low / step).to_integral_value(rounding=ROUND_FLOOR) * step
    last = (high / step).to_integral_value(rounding=ROUND_CEILING) * step
    count = int((last - first) / step)
    return [_number(first + step * i) for i in range(count + 1)]


def _step(*, span: Decimal, intervals: int, integer: bool) -> Decimal:
    """The smallest 1-2-5 step that covers `span` in at most `intervals` steps
    (one more is allowed for when both ends are rounded outwards)."""
    exponent = (span / intervals).adjusted()  # the power of ten of the raw step
    for power in range(exponent - 1, exponent + 3):
        for factor in STEP_FACTORS:
            step = Decimal(factor).scaleb(power)
            if integer and step < 1:
                continue
            if span / step <= intervals:
                return step
    return Decimal(10).scaleb(exponent + 3)  # not reached: 10 × 10^(e+2) always covers it


def _number(value: Decimal) -> int | float:
    # JSON-ready: whole numbers as ints; fractions as the float of their exact decimal.
    return int(value) if value == value.to_integral_value() else float(value.normalize())


def time_ticks(moments: list[datetime], *, every_minutes: int = 5) -> list[int]:
    """Indexes of the moments that fall on a round minute (a multiple of
    `every_minutes`) of the shop's clock: where the time axis gets a label."""
    shop_tz = timezone.get_default_timezone()
    return [i for i, moment in enumerate(moments) if timezone.localtime(moment, shop_tz).minute % every_minutes == 0]


def shop_clock(moment: datetime, fmt: str = "%H:%M") -> str:
    """A moment as the shop's clock shows it (settings.TIME_ZONE)."""
    return timezone.localtime(moment, timezone.get_default_timezone()).strftime(fmt)
