"""Who may see an order page: the holder of the order's access token (from the
link, or remembered in the session by checkout), or a browser that proved the
order number and email on the lookup page. Everyone else gets a 404.

Sessions live in Redis, and an access token opens an order's keys, so what a
session remembers (the token, the email) is sealed with the card keys' Fernet
keys: Redis never holds a token that opens an order."""

from dataclasses import dataclass

from cryptography.fernet import InvalidToken

from apps.cardkeys.crypto import decrypt_secret, encrypt_secret
from apps.catalog.models import Product

from .identity import order_number_product_id
from .models import Order
from .selectors import order_buyer_read, order_find_for_lookup, order_snapshot, order_status_record, orders_for_grants
from .status_records import OrderStatusRecord

# order_no -> access token, written by checkout and by a visit with ?token=.
SESSION_TOKENS = "order_tokens"
# order_no -> normalised email, written by the lookup page. Checked again on
# every visit, so it never outlives a change of the order's email.
SESSION_LOOKUPS = "order_lookups"
# What the unpaid-limit message may link to.
UNPAID = frozenset({Order.Status.QUEUED, Order.Status.AWAITING_PAYMENT})
# Bounds the session's size; a buyer's most recent orders stay reachable.
MAX_GRANTS = 20


@dataclass(frozen=True)
class OrderAccess:
    snapshot: dict
    token: str | None  # None when access comes from the lookup page
    # What the poll may store for a later "unchanged" answer (None: queued, or read from the replica).
    record: OrderStatusRecord | None = None


def order_grant_token(*, session, order_no: str, token: str) -> None:
    _grant(session, SESSION_TOKENS, order_no, token)


def order_grant_lookup(*, session, order_no: str, email: str) -> None:
    _grant(session, SESSION_LOOKUPS, order_no, email.strip().lower())


def _grant(session, name: str, order_no: str, value: str) -> None:
    if _granted(session, name, order_no) == value:
        return  # unchanged: a polling page must not rewrite its session each time
    # Entries no key opens any more (sealed under a retired key, or written in
    # clear before grants were sealed) are dropped on the way.
    grants = {no: sealed for no, sealed in (session.get(name) or {}).items() if _unsealed(sealed) is not None}
    grants.pop(order_no, None)
    grants[order_no] = encrypt_secret(value)
    session[name] = dict(list(grants.items())[-MAX_GRANTS:])


def _granted(session, name: str, order_no: str) -> str | None:
    return _unsealed((session.get(name) or {}).get(order_no))


def _unsealed(sealed) -> str | None:
    if not isinstance(sealed, str):
        return None
    try:
        return decrypt_secret(sealed)
    except (InvalidToken, ValueError):  # sealed under a key since retired, or not ours
        return None


def order_session_token(*, request, order_no: str) -> str | None:
    """The access token this browser's session remembers for the order (checkout's grant)."""
    return _granted(request.session, SESSION_TOKENS, order_no)


def order_access_get(*, request, order_no: str) -> OrderAccess | None:
    """The order as this request may see it, or None (answer 404). A valid
    ?token= is remembered in the session."""
    query_token = request.GET.get("token")
    if query_token:
        read = order_buyer_read(order_no=order_no, token=query_token)
        if read is not None:
            order_grant_token(session=request.session, order_no=order_no, token=query_token)
            return OrderAccess(snapshot=read.snapshot, token=query_token, record=read.record)
    session_token = _granted(request.session, SESSION_TOKENS, order_no)
    if session_token:
        read = order_buyer_read(order_no=order_no, token=session_token)
        if read is not None:
            return OrderAccess(snapshot=read.snapshot, token=session_token, record=read.record)
    email = _granted(request.session, SESSION_LOOKUPS, order_no)
    if email:
        order = order_find_for_lookup(order_no=order_no, email=email)
        if order is not None:
            return OrderAccess(snapshot=order_snapshot(order), token=None, record=order_status_record(order))
    return None


def order_numbers_granted(*, session) -> list[str]:
    """The order numbers this browser was granted (checkout, a ?token= visit,
    the lookup page, the mail link), each once, most recently granted first.
    A grant is no proof by itself: orders_granted checks each one."""
    numbers: list[str] = []
    for name in (SESSION_TOKENS, SESSION_LOOKUPS):
        numbers += [no for no in reversed(list(session.get(name) or {})) if no not in numbers]
    return numbers


def orders_granted(*, session, limit: int) -> list:
    """The orders this browser may open, newest first, at most `limit`: each
    grant checked as a visit checks it (the token against its hash, the
    lookup's email against the order's)."""
    tokens = {no: t for no in (session.get(SESSION_TOKENS) or {}) if (t := _granted(session, SESSION_TOKENS, no))}
    emails = {no: e for no in (session.get(SESSION_LOOKUPS) or {}) if (e := _granted(session, SESSION_LOOKUPS, no))}
    return orders_for_grants(tokens=tokens, emails=emails)[:limit]


def order_unpaid_granted(*, request, sku: str) -> str | None:
    """The number of the newest unpaid order of this product that this
    browser may open (checked as a visit checks it), or None. An order still
    queued in the gate counts: it is unpaid too."""
    product_id = Product.objects.filter(sku=sku).values_list("id", flat=True).first()
    if product_id is None:
        return None
    for order_no in order_numbers_granted(session=request.session):
        if order_number_product_id(order_no) != product_id:
            continue
        access = order_access_get(request=request, order_no=order_no)
        if access is not None and access.snapshot["status"] in UNPAID:
            return order_no
    return None
