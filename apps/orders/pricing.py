"""Every order total is computed here, in Decimal."""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def order_amount(*, unit_price: Decimal | str, quantity: int) -> Decimal:
    return (Decimal(unit_price) * quantity).quantize(CENT, rounding=ROUND_HALF_UP)


def tier_unit_price(*, price: Decimal, tiers: tuple[tuple[int, Decimal], ...], quantity: int) -> Decimal:
    """The unit price an order of `quantity` pays: the wholesale tier with the
    highest minimum quantity it reaches, else the base price. The same choice
    as checkout.lua makes from the gate's rules (that one is the order's);
    this one is for showing prices before checkout."""
    unit = Decimal(price)
    for min_quantity, tier_price in sorted(tiers):
        if min_quantity <= quantity:
            unit = Decimal(tier_price)
    return unit
