"""Every order total is computed here, in Decimal."""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
# An order always costs something: a provider takes no payment of 0, and an
# order that costs nothing would need no payment at all (another flow).
MIN_AMOUNT = CENT
PERCENT, FIXED = "percent", "fixed"


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


@dataclass(frozen=True)
class OrderPrice:
    subtotal: Decimal  # unit price × quantity
    discount: Decimal  # what the coupon took off
    amount: Decimal  # what the buyer pays: subtotal - discount, at least MIN_AMOUNT


def order_price(*, unit_price: Decimal | str, quantity: int, coupon_kind: str = "", coupon_value="") -> OrderPrice:
    """An order's price with its coupon, if any: a percentage of the subtotal
    (rounded half up to the cent) or a fixed amount off the order, never
    leaving less than MIN_AMOUNT to pay."""
    subtotal = order_amount(unit_price=unit_price, quantity=quantity)
    if coupon_kind == PERCENT:
        off = (subtotal * Decimal(coupon_value) / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    elif coupon_kind == FIXED:
        off = Decimal(coupon_value).quantize(CENT, rounding=ROUND_HALF_UP)
    else:
        off = Decimal(0)
    amount = max(subtotal - off, MIN_AMOUNT)
    return OrderPrice(subtotal=subtotal, discount=subtotal - amount, amount=amount)


def reservation_price(reservation) -> OrderPrice:
    """The price of a reservation (apps.stock.reservations.Reservation): its
    unit price, quantity and the coupon terms it carries from checkout."""
    return order_price(
        unit_price=reservation.unit_price,
        quantity=reservation.quantity,
        coupon_kind=reservation.coupon_kind,
        coupon_value=reservation.coupon_value,
    )
