"""The order-status poll, shared by the order page's JSON endpoint
(views.order_status) and GET /api/v1/orders/<no> (api.OrderDetailView).

A conditional request: every answer carries an `ETag` (the status, see
status_records.order_status_etag). A poll that sends it back in
`If-None-Match`, with the order's token, for an order whose status record is
in Redis and unchanged, is answered `304 Not Modified` from that one Redis
read: no MariaDB query, no session read or write, no cookie. Everything else
(no record, another status, a wrong token, a lookup grant without a token) is
answered as before, from MariaDB, and stores the record for the next poll.
Keys therefore only ever come from MariaDB, to the token holder.

Every answer also says when to poll again (`poll_after_ms` in the body,
`Retry-After` in seconds on both 200 and 304): the status's own pace, slower
as the order ages and as the workers' backlog grows (apps.stock.overload,
read at most every 2 s per process), so a busy shop is polled less.
"""

import hmac
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpResponseNotModified

from apps.core import metrics
from apps.stock.overload import shop_backlog_ratio

from .identity import access_token_hash
from .models import Order
from .status_records import (
    OrderStatusRecord,
    RecordRead,
    etag_matches,
    order_status_etag,
    order_status_record_read,
    order_status_record_store,
)

Status = Order.Status

# The status's own pace: how soon it may change by itself (ms).
BASE_POLL_MS = {
    Status.QUEUED: 1000,  # persisted within milliseconds
    Status.AWAITING_PAYMENT: 2000,  # the buyer is paying
    Status.PAID: 1000,  # keys follow within a second
    Status.NEEDS_ATTENTION: 15000,  # an operator acts
    Status.REFUND_PENDING: 15000,
    Status.EXPIRED: 30000,  # only a late payment moves it
    Status.CANCELLED: 30000,
    Status.DELIVERED: 60000,  # final: the page stops polling
    Status.REFUNDED: 60000,
}
# A paid order of a manual-delivery product waits for the merchant, maybe for
# hours; the page polled it every 10 s before, and the buyer still sees the
# delivery within seconds of the merchant's.
MANUAL_PAID_POLL_MS = 10000
# The interval grows by a quarter per minute of age past the first two, up to
# 2× (with the page's own backoff, ×3, an old unpaid order is polled every
# ~12 s: a buyer paying by QR code on a phone still sees "paid" soon).
AGE_GRACE_MINUTES = 2
AGE_STEP_PER_MINUTE = 0.25
AGE_MAX_FACTOR = 2.0
# Up to 4× slower as the workers' backlog reaches its limit (checkout pauses there).
LOAD_MAX_FACTOR = 4.0

NO_STORE = "no-cache, no-store, must-revalidate, private, max-age=0"


def poll_after_ms(*, status: str, placed_at: float | None, manual: bool, now: float | None = None) -> int:
    """When a client should poll this order again, in milliseconds. Age counts
    in whole minutes, so two answers a moment apart agree."""
    base = MANUAL_PAID_POLL_MS if manual and status == Status.PAID else BASE_POLL_MS.get(status, 5000)
    minutes = int(((now or time.time()) - placed_at) // 60) if placed_at else 0
    age = min(AGE_MAX_FACTOR, 1 + max(0, minutes - AGE_GRACE_MINUTES) * AGE_STEP_PER_MINUTE)
    load = 1 + (LOAD_MAX_FACTOR - 1) * min(1.0, max(0.0, shop_backlog_ratio()))
    return int(min(settings.ORDER_POLL_MAX_MS, base * age * load))


@dataclass(frozen=True)
class PollCheck:
    """The fast path's verdict: `unchanged` is the record to answer 304 from;
    `read` is kept for storing a fresh record after the slow path."""

    read: RecordRead | None
    unchanged: OrderStatusRecord | None


def order_poll_check(*, order_no: str, token: str | None, if_none_match: str | None) -> PollCheck:
    """One Redis read, before any MariaDB read (the record's generation must
    be read first: status_records explains the race it closes)."""
    read = order_status_record_read(order_no=order_no)
    record = read.record if read is not None else None
    if (
        record is not None
        and token
        and etag_matches(if_none_match, record.etag)
        and hmac.compare_digest(access_token_hash(token), record.token_hash)
    ):
        return PollCheck(read=read, unchanged=record)
    return PollCheck(read=read, unchanged=None)


def order_poll_remember(*, check: PollCheck, record: OrderStatusRecord | None) -> None:
    """After the slow path: store the record it read from the primary, for
    the next poll (unless a writer dropped it meanwhile, or it is there)."""
    if record is not None and check.read is not None and check.read.record != record:
        order_status_record_store(record=record, gen=check.read.gen)


def poll_not_modified(record: OrderStatusRecord):
    metrics.order_polled(answer="not_modified")
    after = poll_after_ms(status=record.status, placed_at=record.placed_at, manual=record.manual)
    response = HttpResponseNotModified()
    _poll_headers(response, etag=record.etag, after_ms=after)
    return response


def poll_body(*, snapshot: dict, record: OrderStatusRecord | None) -> tuple[dict, str, int]:
    """The 200's body (the snapshot plus `poll_after_ms`), its ETag and interval."""
    metrics.order_polled(answer="full")
    after = poll_after_ms(
        status=snapshot["status"],
        placed_at=record.placed_at if record is not None else None,
        manual=snapshot.get("delivery") == "manual",
    )
    return {**snapshot, "poll_after_ms": after}, order_status_etag(snapshot["status"]), after


def poll_headers(response, *, etag: str, after_ms: int):
    _poll_headers(response, etag=etag, after_ms=after_ms)
    return response


def _poll_headers(response, *, etag: str, after_ms: int) -> None:
    response["ETag"] = etag
    response["Retry-After"] = str(max(1, math.ceil(after_ms / 1000)))
    # The 200 can hold keys: no shared or browser cache keeps it; the client
    # sends If-None-Match itself (the order page's script does).
    response["Cache-Control"] = NO_STORE
