"""Every order total is computed here, in Decimal."""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def order_amount(*, unit_price: Decimal | str, quantity: int) -> Decimal:
    return (Decimal(unit_price) * quantity).quantize(CENT, rounding=ROUND_HALF_UP)
