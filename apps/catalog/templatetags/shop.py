from datetime import datetime
from decimal import Decimal

from django import template
from django.utils import dateformat, timezone, translation

register = template.Library()

_SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "HKD": "HK$", "JPY": "JP¥", "GBP": "£"}


@register.filter
def money(amount: Decimal | str, currency: str) -> str:
    """`9.90|money:"CNY"` -> "¥9.90"; an unknown currency keeps its code. Takes
    the text of an order snapshot's money fields too."""
    amount = Decimal(amount)
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{amount:.2f}" if symbol else f"{amount:.2f} {currency}"


@register.filter
def clock(seconds: int) -> str:
    """Seconds as H:MM:SS, the countdown's first frame before its script runs."""
    hours, rest = divmod(max(int(seconds), 0), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


@register.filter
def shop_time(value: datetime | None, length: str = "") -> str:
    """A moment in the shop's TIME_ZONE, saying which: "Nov 29, 2026, 11:56
    UTC+8" in English ("11:56" alone says nothing to a buyer abroad),
    "2026-11-29 11:56 (UTC+8)" in Chinese; `|shop_time:"short"` leaves the
    year out (a product card). The offset, not the zone's abbreviation:
    Asia/Shanghai's "CST" also names US Central time."""
    if not value:
        return ""
    local = timezone.localtime(value, timezone.get_default_timezone())
    minutes = int(local.utcoffset().total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    zone = f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")
    short = length == "short"
    if (translation.get_language() or "").startswith("zh"):
        return f"{dateformat.format(local, 'm-d H:i' if short else 'Y-m-d H:i')} ({zone})"
    return f"{dateformat.format(local, 'M j, H:i' if short else 'M j, Y, H:i')} {zone}"
