"""The order-status record: what a poll of an unchanged order is answered from,
without MariaDB and without the session (docs/architecture.md, "The order
page's poll").

Design, the simplest that is never wrong:

- **A cache of MariaDB's truth, on the cache Redis** (REDIS_URL, django-redis'
  connection), not on the gate. Losing it loses nothing: a poll that finds no
  record reads MariaDB as before, and writes the record again. The gate Redis
  is the durable one (`appendfsync always` in production): a cache write there
  would pay an fsync on the checkout path's server for nothing. Two keys per
  order: the record `<prefix>:orderpoll:<order_no>` and its generation
  `<prefix>:orderpoll:<order_no>:gen`.
- **Written by the poll that read MariaDB, dropped by every writer.** The poll's
  slow path already holds the order row; a writer (pay, deliver, expire,
  cancel, refund, needs attention, retry) only needs the order number, after
  commit: `order_status_records_drop_on_commit`. A writer does not need to
  know how a record looks, and a new field needs no writer changed.
- **A generation against the classic cache-aside race.** A counter `gen`
  next to the record. A writer's drop increments `gen` and deletes the
  record (one Lua script: atomic); a poll reads `gen` (in the same MGET as
  the record) *before* it reads MariaDB, and stores its record only if `gen`
  is still the same (one Lua script). So a poll that read the row before a
  commit and stores after that commit's drop stores nothing: a record never
  holds a status older than the last drop. `gen` lives a day (at least 10×
  the record), so a poll stalled past the record's lifetime cannot find it
  expired and back at "" (ABA). A record read from the replica is never stored
  (it may lag behind a drop that already happened).
- **Only a settled-or-moving row, never `queued`.** A queued order is truth in
  the gate (its reservation), which the gate's own scripts may end without any
  MariaDB writer; it lasts milliseconds, so its polls take the slow path.
- **A TTL as the last bound** (ORDER_STATUS_RECORD_SECONDS): a drop lost
  between a commit and Redis (a process killed in that millisecond, Redis
  unreachable, an operator's SQL) leaves a record that is older than MariaDB
  for at most that long. It only ever answers 304 to a client that already
  has that very status, so it delays news, it never shows an older status
  after a newer one.

The record holds the order's access token hash (the sha256 MariaDB already
keeps, never the token), so a poll is authorised without MariaDB; a wrong
token is answered by the slow path, exactly as before (no oracle).
"""

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import cache

from django.conf import settings
from django.db import transaction
from django_redis import get_redis_connection
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Bump when the record's fields change: an old process's record then reads as missing.
RECORD_FORMAT = 1

# Store the record only if no writer dropped it since the poll read `gen`.
# KEYS[1] the record, KEYS[2] the generation; ARGV: gen read (or "" for none),
# record JSON, the record's ttl.
_STORE = """
local gen = redis.call('GET', KEYS[2]) or ''
if gen ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

# Drop records, atomically per call: KEYS are pairs (record, generation);
# ARGV[1] the generation's ttl. A reader never sees a record gone with its
# generation unmoved, nor a generation moved without its lifetime renewed.
_DROP = """
for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i + 1])
  redis.call('EXPIRE', KEYS[i + 1], tonumber(ARGV[1]))
  redis.call('DEL', KEYS[i])
end
return #KEYS / 2
"""

# The generation outlives the record by far (a day, and at least 10× the
# record): see generation_seconds.
GENERATION_MIN_SECONDS = 24 * 3600


def generation_seconds() -> int:
    """A poll that read the generation and then stalled, even past the
    record's lifetime, must find it moved on, never expired and restarted: at
    "" it would match a poll that read before the first drop (ABA)."""
    return max(GENERATION_MIN_SECONDS, 10 * settings.ORDER_STATUS_RECORD_SECONDS)


@dataclass(frozen=True)
class OrderStatusRecord:
    """What a poll needs to answer "unchanged" for an order in MariaDB."""

    order_no: str
    status: str
    # sha256 of the access token, as Order.access_token_hash.
    token_hash: str
    # When the order was placed (epoch seconds): the poll interval grows with age.
    placed_at: float
    # A paid order of a manual-delivery product waits for a person: polled slowly.
    manual: bool = False

    @property
    def etag(self) -> str:
        return order_status_etag(self.status)

    def to_json(self) -> str:
        return json.dumps({"v": RECORD_FORMAT, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "OrderStatusRecord | None":
        """None for a record of another format (written by an older or newer release)."""
        data = json.loads(text)
        if data.pop("v", None) != RECORD_FORMAT:
            return None
        return cls(**data)


@dataclass(frozen=True)
class RecordRead:
    """A poll's one Redis read: the record (None when missing) and the
    generation to store a new one under."""

    record: OrderStatusRecord | None
    gen: str


def order_status_etag(status: str) -> str:
    """The poll's entity tag. The status alone decides what the order page
    shows (the keys come with `delivered` and never change while it holds),
    so equal statuses are equivalent answers; the format version keeps a
    future change of the body from matching an old tag. Weak (W/): the 200's
    bytes also vary with Accept-Language (the product's title) and the
    shop's configuration, so equal tags promise the same meaning, not the
    same bytes (RFC 9110 8.8.1); If-None-Match compares weakly anyway."""
    return f'W/"s{RECORD_FORMAT}-{status}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison against an If-None-Match list."""
    if not if_none_match:
        return False
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") in (bare, "*") for tag in if_none_match.split(","))


def _redis():
    return get_redis_connection("default")


def record_key(order_no: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:orderpoll:{order_no}"


def generation_key(order_no: str) -> str:
    return f"{record_key(order_no)}:gen"


def order_status_record_read(*, order_no: str) -> RecordRead | None:
    """The order's record and generation, in one round trip; None when Redis
    cannot be asked (the poll then reads MariaDB and stores nothing)."""
    try:
        rec, gen = _redis().mget([record_key(order_no), generation_key(order_no)])
    except RedisError:
        return None
    record = None
    if rec is not None:
        try:
            record = OrderStatusRecord.from_json(rec)
        except (ValueError, TypeError):  # not ours: as if missing
            record = None
    return RecordRead(record=record, gen=gen.decode() if gen is not None else "")


@cache
def _store_script(client):
    # One Script per client: its SHA is computed once, EVALSHA thereafter.
    return client.register_script(_STORE)


@cache
def _drop_script(client):
    return client.register_script(_DROP)


def order_status_record_store(*, record: OrderStatusRecord, gen: str) -> bool:
    """Store what the poll just read from the primary, unless a writer dropped
    the record since `gen` was read. Never raises: the record is a cache."""
    try:
        stored = _store_script(_redis())(
            keys=[record_key(record.order_no), generation_key(record.order_no)],
            args=[gen, record.to_json(), settings.ORDER_STATUS_RECORD_SECONDS],
        )
    except RedisError:
        return False
    return bool(stored)


def order_status_records_drop_on_commit(*, order_nos: Iterable[str]) -> None:
    """Every writer of Order.status calls this inside its transaction, right
    after its status write: once it commits, the orders' records are dropped
    and their generations move on, so no poll answers from (or stores) a
    status older than the commit.

    One callback per transaction, for all the orders it moves (one round
    trip), registered at the first call, so before the task publishes the
    writers register after it: Django runs no later callback once one raises,
    and a broker down must not leave the later orders' records behind. It is
    robust, and the drop itself never raises, so it never fails a writer
    either; a Redis that cannot be reached costs it little (see
    order_status_records_drop_rollback_unsafe)."""
    numbers = [no for no in order_nos if no]
    if not numbers:
        return
    connection = transaction.get_connection()
    if not connection.in_atomic_block:  # on_commit would run it at once too
        order_status_records_drop_rollback_unsafe(order_nos=numbers)
        return
    # This transaction's callback, unless a savepoint rollback discarded it.
    # Numbers added under a savepoint that then rolls back stay: one more
    # drop only costs a poll a MariaDB read.
    pending = next((f for _, f, _ in connection.run_on_commit if hasattr(f, "order_nos")), None)
    if pending is None:
        pending = _drop_callback()
        transaction.on_commit(pending, robust=True)
    pending.order_nos.extend(no for no in numbers if no not in pending.order_nos)


def _drop_callback():
    order_nos: list[str] = []

    def drop_order_status_records() -> None:
        order_status_records_drop_rollback_unsafe(order_nos=order_nos)

    drop_order_status_records.order_nos = order_nos
    return drop_order_status_records


# After a drop failed, a process skips drops this long: a cache Redis that
# cannot be reached (black-holed: each attempt waits SOCKET_CONNECT_TIMEOUT)
# then costs one writer that wait, not every one. A record left behind is
# bounded by its TTL, as any drop lost.
DROP_PAUSE_SECONDS = 5.0
_drops_paused_until = 0.0


def order_status_records_drop_rollback_unsafe(*, order_nos: Iterable[str]) -> None:
    """Drop now (after a commit, or a test's or an operator's change made
    outside the services). Never raises: if Redis cannot be reached, the
    records' TTL bounds how long a poll may still answer "unchanged" (and say
    so in the log)."""
    global _drops_paused_until
    numbers = list(order_nos)
    if not numbers:
        return
    if time.monotonic() < _drops_paused_until:
        _log_not_dropped(numbers, "the cache Redis failed a moment ago")
        return
    try:
        _drop_now(numbers)
    except RedisError as exc:
        _drops_paused_until = time.monotonic() + DROP_PAUSE_SECONDS
        _log_not_dropped(numbers, f"Redis unreachable ({exc.__class__.__name__})")
    except Exception:  # a cache: whatever went wrong, the writer's commit stands
        logger.exception("%d order status records not dropped", len(numbers))


def order_status_drops_resume() -> None:
    """Drop again at once (the test suite, between tests)."""
    global _drops_paused_until
    _drops_paused_until = 0.0


def _drop_now(numbers: list[str]) -> None:
    _drop_script(_redis())(
        keys=[key for no in numbers for key in (record_key(no), generation_key(no))],
        args=[generation_seconds()],
    )


def _log_not_dropped(numbers: list[str], why: str) -> None:
    logger.warning(
        "%d order status records not dropped: %s; polls may say unchanged for up to %ss",
        len(numbers),
        why,
        settings.ORDER_STATUS_RECORD_SECONDS,
    )
