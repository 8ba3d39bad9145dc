"""The records the gate keeps in Redis, typed.

checkout.lua writes a Reservation (to the product's reservations hash and to
its persistence queue); paid.lua turns one into a HeldShare when its order
ends without keys. Python reads and writes them only through these classes:
nobody else indexes that JSON by its field names.
"""

import json
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone


@dataclass(frozen=True)
class Reservation:
    """Stock held for one order, from checkout until the order ends."""

    order_no: str
    # The buyer identity hashes the per-buyer limits counted it against.
    buyers: tuple[str, ...]
    email: str
    quantity: int
    token_hash: str
    # Text, as the rules hash holds the price; Decimal(unit_price) for money.
    unit_price: str
    currency: str
    created_at: int
    reserved_until: int
    # Paid reservations no longer count towards their buyers' unpaid slots.
    paid: bool = False
    # The buyer's language at checkout ("" = the shop's default): the order's mails speak it.
    language: str = ""
    # The coupon the checkout applied (apps.coupons): its terms as they were
    # then, so a later edit of the coupon cannot change this order's price.
    # Its use was taken before the reservation (coupon_take.lua).
    coupon_id: int | None = None
    coupon_code: str = ""
    coupon_kind: str = ""
    coupon_value: str = ""
    # What the buyer typed in the product's checkout fields, encrypted
    # (apps/orders/input_fields.py); "" for none.
    input_values: str = ""

    @property
    def price(self) -> Decimal:
        return Decimal(self.unit_price)

    def to_json(self) -> str:
        return json.dumps(
            {
                "order_no": self.order_no,
                "buyers": list(self.buyers),
                "email": self.email,
                "quantity": self.quantity,
                "token_hash": self.token_hash,
                "unit_price": self.unit_price,
                "currency": self.currency,
                "created_at": self.created_at,
                "reserved_until": self.reserved_until,
                "paid": self.paid,
                "language": self.language,
                "coupon_id": self.coupon_id,
                "coupon_code": self.coupon_code,
                "coupon_kind": self.coupon_kind,
                "coupon_value": self.coupon_value,
                "input_values": self.input_values,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> "Reservation":
        """Raises ValueError, KeyError or TypeError for a record that is not a
        reservation (a missing field, a field of the wrong type)."""
        data = json.loads(raw)
        buyers = data["buyers"]
        if not isinstance(buyers, list) or not all(isinstance(b, str) for b in buyers):
            raise TypeError("buyers")
        return cls(
            order_no=_text(data, "order_no"),
            buyers=tuple(buyers),
            email=_text(data, "email"),
            quantity=_whole(data, "quantity"),
            token_hash=_text(data, "token_hash"),
            unit_price=_text(data, "unit_price"),
            currency=_text(data, "currency"),
            created_at=_whole(data, "created_at"),
            reserved_until=_whole(data, "reserved_until"),
            # checkout.lua leaves it out: a new reservation is unpaid.
            paid=data.get("paid", False) is True,
            # A record queued before the order language existed has none.
            language=_text(data, "language") if "language" in data else "",
            # checkout.lua leaves these out when no coupon was applied.
            coupon_id=_whole(data, "coupon_id") if data.get("coupon_id") is not None else None,
            coupon_code=_text(data, "coupon_code") if "coupon_code" in data else "",
            coupon_kind=_text(data, "coupon_kind") if "coupon_kind" in data else "",
            coupon_value=_text(data, "coupon_value") if "coupon_value" in data else "",
            input_values=_text(data, "input_values") if "input_values" in data else "",
        )

    @classmethod
    def from_order(cls, order, *, paid: bool) -> "Reservation":
        """The reservation a database order stands for (a gate rebuild, a late
        payment, a retried order). `order` is an orders.Order."""
        return cls(
            order_no=order.order_no,
            buyers=tuple(order.buyer_identity_list()),
            email=order.buyer_email,
            quantity=order.quantity,
            token_hash=order.access_token_hash,
            unit_price=str(order.unit_price),
            currency=order.currency,
            created_at=int(order.created_at.timestamp()),
            reserved_until=int((order.reserved_until or timezone.now()).timestamp()),
            paid=paid,
            language=order.language,
            # The discount the order got, as a fixed amount: the same price again.
            coupon_id=order.coupon_id,
            coupon_code=order.coupon_code,
            coupon_kind="fixed" if order.coupon_id else "",
            coupon_value=str(order.discount) if order.coupon_id else "",
            input_values=order.input_values,
        )


def _text(data: dict, name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise TypeError(name)
    return value


def _whole(data: dict, name: str) -> int:
    """Lua numbers are doubles; cjson writes whole ones without a fraction."""
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise TypeError(name)
    return int(value)


@dataclass(frozen=True)
class HeldShare:
    """The buyers' share of an order that ended without keys (needs
    attention): it still counts towards their limits until a refund or a
    retry settles it."""

    buyers: tuple[str, ...]
    quantity: int

    def to_json(self) -> str:
        return json.dumps({"buyers": list(self.buyers), "quantity": self.quantity})
