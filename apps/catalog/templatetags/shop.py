from decimal import Decimal

from django import template

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
