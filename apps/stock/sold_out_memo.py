"""This process's memory of the stock the gate last reported for a product,
so the crowd that arrives after the last key is answered sold_out without a
Redis round trip (in a flash sale most buyers arrive after it: 3 of 4 in the
benchmark's).

What is remembered is an upper bound: the stock left after this process's
last accepted checkout, or one less than the quantity the gate last refused
as sold out. Stock only falls between two checkouts unless something returns
it (a cancel, an expiry, a refund, keys uploaded, a rebuild of the gate), so
a quantity above that bound would be refused by the gate too, until a
return. A return in this process forgets the product at once
(stock_reservation_release*, the gate's warm-up and stock adjustments); one
in another process (another web node, a worker's expiry) is seen once the
memory is SOLD_OUT_MEMO_SECONDS old: a buyer is then told sold_out for at
most that long after a unit came back, as if they had come that much
earlier. Only refusals come from here: an order is only ever accepted by
the checkout script (P1)."""

import time

from django.conf import settings

# product id -> (stock at most, time.monotonic() when the gate said so).
# Plain dict operations: atomic under the GIL, so threads share it safely.
_stock_seen: dict[int, tuple[int, float]] = {}


def sold_out_memo_note(*, product_id: int, stock_at_most: int) -> None:
    """The gate has just reported that at most this much stock is left."""
    if settings.SOLD_OUT_MEMO_SECONDS > 0:
        _stock_seen[product_id] = (stock_at_most, time.monotonic())


def sold_out_memo_refuses(*, product_id: int, quantity: int) -> bool:
    """True when the gate reported, less than SOLD_OUT_MEMO_SECONDS ago,
    less stock than `quantity`."""
    seen = _stock_seen.get(product_id)
    if seen is None:
        return False
    stock_at_most, at = seen
    if time.monotonic() - at >= settings.SOLD_OUT_MEMO_SECONDS:
        return False
    return quantity > stock_at_most


def sold_out_memo_forget(*, product_id: int) -> None:
    """Stock of the product was returned or rebuilt by this process."""
    _stock_seen.pop(product_id, None)
