"""The invariants a chaos run checks once the shop has recovered, read from
SQL (and, for I5, the gate's counter in Redis), never from what the shop's own
services say about themselves.

    I1  keys sold ≤ keys imported: the quantities of the orders holding or
        given keys (awaiting payment, paid, delivered) never exceed the keys
        imported and still sellable (not voided, not revoked)
    I2  no key on two orders: no secret (by its fingerprint) sold to two orders
    I3  every paid order delivered, or in a flagged state an operator sees
        (needs_attention, refund_pending, refunded); a delivered order holds
        exactly its quantity of keys; no recorded payment left on an unpaid order
    I4  one effect per payment event: an order paid by two events is flagged
        overpaid; no order holds more keys than it bought; every notification
        the webhook answered 2xx is recorded, once, against its order
    I5  after reconcile, each gate's stock counter in Redis = available keys −
        keys held by live reservations (orders awaiting payment or paid)

Each check takes the product ids a run used (the database may hold other
runs' products) and returns a Check whose `violations` name what broke, so a
failing run says which order or key to look at."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.db import connections

from apps.cardkeys.models import CardKey
from apps.catalog.models import Product
from apps.orders.models import Order
from apps.payments.models import PaymentEvent
from apps.stock.redis_keys import stock_key

ORDERS = Order._meta.db_table
KEYS = CardKey._meta.db_table
EVENTS = PaymentEvent._meta.db_table
PRODUCTS = Product._meta.db_table

# Orders whose quantity is taken from stock: reserved, paid, or served.
HOLDING_OR_SOLD = ("awaiting_payment", "paid", "delivered")
# Orders that still hold stock in the gate (keys not yet sold to them).
HOLDING = ("awaiting_payment", "paid")
# Where a paid order may rest: served, or flagged for an operator.
PAID_RESTING = ("delivered", "needs_attention", "refund_pending", "refunded")
# Violations listed per check; the rest are counted.
SHOWN = 10


@dataclass(frozen=True)
class Check:
    code: str
    title: str
    violations: tuple[str, ...]
    # Violations beyond those listed.
    more: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        if self.ok:
            return f"{self.code} pass"
        extra = f" (+{self.more} more)" if self.more else ""
        return f"{self.code} FAIL: " + "; ".join(self.violations) + extra


def _check(code: str, title: str, violations: list[str]) -> Check:
    return Check(code, title, tuple(violations[:SHOWN]), max(0, len(violations) - SHOWN))


def _rows(sql: str, params: Iterable = ()) -> list[tuple]:
    # The primary: a replica's lag would read a state the shop already left.
    with connections["default"].cursor() as cursor:
        cursor.execute(sql, list(params))
        return list(cursor.fetchall())


def _in(values: Iterable) -> tuple[str, list]:
    """A parameterised IN list (never empty: an empty one is invalid SQL)."""
    values = list(values) or [None]
    return ", ".join(["%s"] * len(values)), values


def keys_sold_within_imported(*, product_ids: list[int]) -> Check:
    """I1."""
    products, params = _in(product_ids)
    holding, holding_params = _in(HOLDING_OR_SOLD)
    rows = _rows(
        f"""
        SELECT p.sku,
               (SELECT COUNT(*) FROM {KEYS} k
                 WHERE k.product_id = p.id AND k.status NOT IN ('void', 'revoked')) AS sellable,
               (SELECT COALESCE(SUM(o.quantity), 0) FROM {ORDERS} o
                 WHERE o.product_id = p.id AND o.status IN ({holding})) AS sold
          FROM {PRODUCTS} p
         WHERE p.id IN ({products})
        """,
        [*holding_params, *params],
    )
    return _check(
        "I1",
        "keys sold ≤ keys imported",
        [f"{sku}: {sold} sold of {sellable} keys" for sku, sellable, sold in rows if sold > sellable],
    )


def no_key_on_two_orders(*, product_ids: list[int]) -> Check:
    """I2. By fingerprint, not row id: a row names one order by construction,
    so the failure to look for is one secret in two rows (imported twice,
    e.g. into two products) going to two buyers."""
    products, params = _in(product_ids)
    rows = _rows(
        f"""
        SELECT k.fingerprint, COUNT(DISTINCT k.order_id), GROUP_CONCAT(DISTINCT o.order_no ORDER BY o.order_no)
          FROM {KEYS} k JOIN {ORDERS} o ON o.id = k.order_id
         WHERE k.product_id IN ({products}) AND k.status IN ('sold', 'revoked')
         GROUP BY k.fingerprint
        HAVING COUNT(DISTINCT k.order_id) > 1
        """,
        params,
    )
    return _check(
        "I2",
        "no key on two orders",
        [f"key {fingerprint[:12]}… on {count} orders: {orders}" for fingerprint, count, orders in rows],
    )


def paid_orders_delivered_or_flagged(*, product_ids: list[int]) -> Check:
    """I3. Run it after the shop had its time to recover: a paid order is
    undelivered for a moment on every sale."""
    products, params = _in(product_ids)
    resting, resting_params = _in(PAID_RESTING)
    stuck = _rows(
        f"SELECT order_no FROM {ORDERS} WHERE product_id IN ({products}) AND status = 'paid' ORDER BY id", params
    )
    short = _rows(
        f"""
        SELECT o.order_no, o.quantity,
               (SELECT COUNT(*) FROM {KEYS} k WHERE k.order_id = o.id AND k.status = 'sold') AS keys_held
          FROM {ORDERS} o
         WHERE o.product_id IN ({products}) AND o.status = 'delivered'
        HAVING keys_held <> o.quantity
        """,
        params,
    )
    unapplied = _rows(
        f"""
        SELECT DISTINCT o.order_no, o.status
          FROM {ORDERS} o JOIN {EVENTS} e ON e.order_id = o.id AND e.kind = 'paid'
         WHERE o.product_id IN ({products}) AND o.status NOT IN ({resting})
           AND o.status <> 'paid'
        """,
        [*params, *resting_params],
    )
    return _check(
        "I3",
        "every paid order delivered or flagged",
        [f"{order_no} paid, not delivered, not flagged" for (order_no,) in stuck]
        + [f"{order_no} delivered with {held} of {quantity} keys" for order_no, quantity, held in short]
        + [f"{order_no} has a recorded payment but is {status}" for order_no, status in unapplied],
    )


def one_effect_per_payment_event(
    *, product_ids: list[int], acknowledged: Mapping[str, str] | None = None, provider: str = "sandbox"
) -> Check:
    """I4. `acknowledged` maps the event ids the webhook answered 2xx to
    their order numbers (what the provider was told is recorded)."""
    products, params = _in(product_ids)
    paid_twice = _rows(
        f"""
        SELECT o.order_no, COUNT(*)
          FROM {ORDERS} o JOIN {EVENTS} e ON e.order_id = o.id AND e.kind = 'paid'
         WHERE o.product_id IN ({products}) AND NOT o.overpaid
         GROUP BY o.id, o.order_no
        HAVING COUNT(*) > 1
        """,
        params,
    )
    served_twice = _rows(
        f"""
        SELECT o.order_no, o.quantity, COUNT(k.id)
          FROM {ORDERS} o JOIN {KEYS} k ON k.order_id = o.id
         WHERE o.product_id IN ({products})
         GROUP BY o.id, o.order_no, o.quantity
        HAVING COUNT(k.id) > o.quantity
        """,
        params,
    )
    violations = [f"{order_no} paid by {n} events, not flagged overpaid" for order_no, n in paid_twice]
    violations += [f"{order_no} holds {n} keys for {quantity} bought" for order_no, quantity, n in served_twice]
    if acknowledged:
        events, event_params = _in(acknowledged)
        recorded = dict(
            _rows(
                f"""
                SELECT e.event_id, o.order_no FROM {EVENTS} e JOIN {ORDERS} o ON o.id = e.order_id
                 WHERE e.provider = %s AND e.event_id IN ({events})
                """,
                [provider, *event_params],
            )
        )
        for event_id, order_no in acknowledged.items():
            if event_id not in recorded:
                violations.append(f"{event_id} answered 2xx but not recorded")
            elif recorded[event_id] != order_no:
                violations.append(f"{event_id} recorded against {recorded[event_id]}, sent for {order_no}")
    return _check("I4", "one effect per payment event", violations)


def gate_stock_matches_database(*, product_ids: list[int], gate) -> Check:
    """I5. `gate` is a Redis client of the gate. Run after reconcile, with the
    shop idle: a checkout or a delivery between the two reads moves one side."""
    products, params = _in(product_ids)
    holding, holding_params = _in(HOLDING)
    rows = _rows(
        f"""
        SELECT p.id, p.sku,
               (SELECT COUNT(*) FROM {KEYS} k WHERE k.product_id = p.id AND k.status = 'available'),
               (SELECT COALESCE(SUM(o.quantity), 0) FROM {ORDERS} o
                 WHERE o.product_id = p.id AND o.status IN ({holding}))
          FROM {PRODUCTS} p
         WHERE p.id IN ({products})
         ORDER BY p.id
        """,
        [*holding_params, *params],
    )
    violations = []
    for product_id, sku, available, held in rows:
        raw = gate.get(stock_key(product_id))
        expected = available - held
        if raw is None:
            violations.append(f"{sku}: no stock counter in Redis (expected {expected})")
        elif int(raw) != expected:
            violations.append(f"{sku}: Redis stock {int(raw)}, database says {available} available - {held} held")
    return _check("I5", "Redis stock = available − live reservations", violations)


def acknowledged_checkouts_kept(*, order_nos: Iterable[str]) -> Check:
    """A 202 is a promise (P6): every order number answered 202 is an order
    row. A gate lost without persistence breaks it by design, so only the
    faults that promise it fail on it; the others report the count."""
    wanted = list(dict.fromkeys(order_nos))
    found: set[str] = set()
    for start in range(0, len(wanted), 1000):
        chunk, params = _in(wanted[start : start + 1000])
        found |= {n for (n,) in _rows(f"SELECT order_no FROM {ORDERS} WHERE order_no IN ({chunk})", params)}
    return _check("A", "every 202 became an order", [f"{n} answered 202, no order" for n in wanted if n not in found])


def invariants_check(
    *, product_ids: list[int], gate, acknowledged_events: Mapping[str, str] | None = None
) -> list[Check]:
    """I1–I5, in order."""
    return [
        keys_sold_within_imported(product_ids=product_ids),
        no_key_on_two_orders(product_ids=product_ids),
        paid_orders_delivered_or_flagged(product_ids=product_ids),
        one_effect_per_payment_event(product_ids=product_ids, acknowledged=acknowledged_events),
        gate_stock_matches_database(product_ids=product_ids, gate=gate),
    ]
