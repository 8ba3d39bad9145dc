"""The order lifecycle: checkout, persistence, payment, fulfilment, expiry.

queued -> awaiting_payment -> paid -> delivered, with the side exits expired,
refund_pending -> refunded and needs_attention (design.md). Each transition has
one writer here.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DataError, IntegrityError, OperationalError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError

from apps.cardkeys.claims import cardkeys_claim, cardkeys_mark_sold
from apps.cardkeys.crypto import decrypt_secret, encrypt_secret
from apps.catalog.page_tokens import page_token_check
from apps.catalog.selectors import ProductInfo, product_info_for_checkout
from apps.core import metrics
from apps.core.db_locks import persist_fence
from apps.payments.models import PaymentEvent
from apps.stock import services as stock
from apps.stock.redis import stock_redis

from .exceptions import (
    CaptchaRequired,
    InvalidInput,
    LimitExceeded,
    OrderNotFound,
    OrderPending,
    PageTokenInvalid,
    PaymentMismatch,
    ProductNotFound,
    RateLimited,
    SaleEnded,
    SaleNotStarted,
    SalePaused,
    SoldOut,
    TooFast,
    UnpaidLimit,
)
from .identity import (
    access_token_hash,
    access_token_new,
    buyer_identities,
    buyer_identity,
    email_normalise,
    idempotency_digest,
    order_number_new,
    order_number_product_id,
    strike_fields,
)
from .models import Order
from .pricing import order_amount

logger = logging.getLogger(__name__)

Status = Order.Status
# Orders that still hold stock in the gate (their keys are not yet sold).
HOLDING_STATUSES = (Status.AWAITING_PAYMENT, Status.PAID)
# Orders that count towards a buyer's per-product limit.
COUNTED_STATUSES = (Status.AWAITING_PAYMENT, Status.PAID, Status.DELIVERED, Status.NEEDS_ATTENTION)


@dataclass(frozen=True)
class BuyerContext:
    """What the request tells about the buyer beyond the email."""

    account_id: int | None = None
    device_id: str = ""
    ip: str = ""
    page_token: str | None = None
    # A captcha this request solved (verified before checkout): clears the
    # client's strikes instead of being asked for one.
    captcha_solved: bool = False

    @property
    def strike_fields(self) -> tuple[str, str]:
        return strike_fields(ip=self.ip, device_id=self.device_id)


@dataclass(frozen=True)
class CheckoutResult:
    order_no: str
    access_token: str
    status: str
    product_id: int


@metrics.checkout_observed
def order_checkout(
    *, sku: str, email: str, quantity, idempotency_key: str | None = None, buyer: BuyerContext | None = None
) -> CheckoutResult:
    """Reserve stock for a buyer. One Redis round trip decides; no database
    read beyond the cached product, no database write, no row lock.

    Raises InvalidInput, ProductNotFound, PageTokenInvalid, TooFast,
    RateLimited, SoldOut, LimitExceeded, UnpaidLimit, SaleNotStarted,
    SaleEnded or SalePaused."""
    email, quantity, idempotency_key = _checkout_input_clean(email=email, quantity=quantity, key=idempotency_key)
    product = _product_for_checkout(sku)
    buyer = buyer or BuyerContext()
    try:
        page_token_check(product=product, token=buyer.page_token)
    except (PageTokenInvalid, TooFast):
        checkout_strike_record(product_id=product.id, buyer=buyer)
        raise
    order_no = order_number_new(product_id=product.id)
    token = access_token_new()
    digest = idempotency_digest(email=email, key=idempotency_key) if idempotency_key else ""
    try:
        outcome = stock.stock_reserve(
            product_id=product.id,
            order_no=order_no,
            buyers=buyer_identities(email=email, product=product, context=buyer),
            quantity=quantity,
            token_hash=access_token_hash(token),
            email=email,
            idempotency_digest=digest,
            # Encrypted: Redis never holds a token that opens an order's keys.
            idempotency_value=f"{order_no} {encrypt_secret(token)}" if digest else "",
            strike_fields=buyer.strike_fields,
            captcha_solved=buyer.captcha_solved,
        )
    except RedisError:
        logger.warning("checkout for %s paused: Redis unreachable", sku)
        raise SalePaused() from None
    if outcome.code == "ok":
        return CheckoutResult(order_no=order_no, access_token=token, status=Status.QUEUED, product_id=product.id)
    if outcome.code == "duplicate":
        first_order_no, sealed_token = outcome.idempotency_value.split(" ", 1)
        first_token = decrypt_secret(sealed_token)
        return CheckoutResult(
            order_no=first_order_no, access_token=first_token, status=Status.QUEUED, product_id=product.id
        )
    raise _checkout_refusal(outcome)


def checkout_strike_record(*, product_id: int, buyer: BuyerContext) -> None:
    """Count a suspicious attempt (bad page token, too fast, honeypot, wrong
    captcha) towards the captcha threshold. Best effort: without Redis,
    checkout is paused anyway."""
    try:
        stock.stock_strike_add(product_id=product_id, strike_fields=buyer.strike_fields)
    except RedisError:
        logger.warning("suspicious attempt not counted: Redis unreachable")


def _checkout_input_clean(*, email, quantity, key) -> tuple[str, int, str | None]:
    fields: dict[str, list[str]] = {}
    email = email_normalise(email) if isinstance(email, str) else ""
    try:
        # The order row holds at most 254 characters; longer must not reach the queue.
        if len(email) > Order._meta.get_field("buyer_email").max_length:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        fields["email"] = [str(_("Enter a valid email address."))]
    try:
        if isinstance(quantity, bool) or (isinstance(quantity, float) and not quantity.is_integer()):
            raise ValueError
        quantity = int(quantity)
        if quantity < 1:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        fields["quantity"] = [str(_("Quantity must be a whole number of at least 1."))]
    if key is not None and (not isinstance(key, str) or len(key) > 64):
        fields["idempotency_key"] = [str(_("The idempotency key must be text of at most 64 characters."))]
    if fields:
        raise InvalidInput(fields=fields)
    return email, quantity, (key or None)


def _product_for_checkout(sku: str) -> ProductInfo:
    if not isinstance(sku, str) or not sku or len(sku) > 64:
        raise InvalidInput(fields={"sku": [str(_("Unknown product."))]})
    # Without Redis this still answers (from the database or this process's
    # copy); the checkout script then fails, and checkout answers sale_paused.
    product = product_info_for_checkout(sku=sku)
    if product is None or not product.is_active:
        raise ProductNotFound()
    return product


def _checkout_refusal(outcome: stock.ReserveOutcome) -> Exception:
    if outcome.code == "sold_out":
        return SoldOut()
    if outcome.code == "limit_exceeded":
        return LimitExceeded(limit=outcome.limit, already=outcome.held)
    if outcome.code == "captcha_required":
        return CaptchaRequired(captcha_url=reverse("api:captcha"))
    if outcome.code == "unpaid_limit":
        return UnpaidLimit(max_unpaid=outcome.max_unpaid)
    if outcome.code == "rate_limited":
        return RateLimited(retry_after=max(1, -(-outcome.retry_after_ms // 1000)))
    if outcome.code == "queue_full":
        return SalePaused(_("Too many orders are waiting to be placed. Please try again in a few seconds."))
    if outcome.code == "too_many":
        message = _("At most %(n)d per order.") % {"n": outcome.max_per_order}
        return InvalidInput(fields={"quantity": [str(message)]})
    if outcome.code == "sale_not_started":
        return SaleNotStarted()
    if outcome.code == "sale_ended":
        return SaleEnded()
    if outcome.code == "not_found":
        return ProductNotFound()
    return SalePaused()


# --- Persistence: queued reservations become database orders.


def order_persist_reservations(*, product_id: int, records: list[dict]) -> int:
    """Write queued reservations as `awaiting_payment` orders, idempotent on the
    order number (a record persisted twice stays one order). Returns how many
    rows were new."""
    orders = [_order_from_reservation(product_id=product_id, record=r) for r in records]
    with transaction.atomic(durable=True):
        existing = set(
            Order.objects.filter(order_no__in=[o.order_no for o in orders]).values_list("order_no", flat=True)
        )
        new = [o for o in orders if o.order_no not in existing]
        # Plain INSERT: IGNORE would turn a bad value into a silent truncation.
        Order.objects.bulk_create(new)
    return len(new)


def _order_from_reservation(*, product_id: int, record: dict) -> Order:
    unit_price = Decimal(record["unit_price"])
    quantity = int(record["quantity"])
    return Order(
        order_no=record["order_no"],
        product_id=product_id,
        buyer_email=record["email"],
        quantity=quantity,
        unit_price=unit_price,
        amount=order_amount(unit_price=unit_price, quantity=quantity),
        currency=record["currency"],
        status=Status.AWAITING_PAYMENT,
        buyer_keys=" ".join(record["buyers"]),
        access_token_hash=record["token_hash"],
        reserved_until=datetime.fromtimestamp(int(record["reserved_until"]), tz=UTC),
    )


def order_persist_queued(*, product_ids: list[int] | None = None) -> int:
    """Move every warmed product's queued reservations into MariaDB. Safe to
    run anywhere, any number of times at once: one worker per product drains
    (the others skip it), and an entry leaves the queue only after commit, so
    a worker killed half-way leaves it for the next."""
    total = 0
    for product_id in product_ids if product_ids is not None else stock.stock_warmed_product_ids():
        with persist_fence(product_id=product_id, timeout=0) as held:
            if held:
                total += order_persist_queue_drain(product_id=product_id)
    return total


def order_persist_queue_drain(*, product_id: int) -> int:
    """Persist one product's queued reservations. Caller holds its persist fence."""
    total = 0
    while records := stock.stock_queue_peek(product_id=product_id, count=settings.PERSIST_BATCH_SIZE):
        try:
            order_persist_reservations(product_id=product_id, records=records)
        except (IntegrityError, DataError, KeyError, ValueError):
            _persist_one_by_one(product_id=product_id, records=records)
        stock.stock_queue_drop(product_id=product_id, count=len(records))
        total += len(records)
    return total


def _persist_one_by_one(*, product_id: int, records: list[dict]) -> None:
    """A batch the database refused: write its records one at a time, so one
    bad record cannot block the queue behind it. A record refused on its own
    is logged and dropped; its reservation then expires like an unpaid one.
    A database that is down raises OperationalError, which is not caught: the
    batch stays queued for the next run."""
    for record in records:
        try:
            order_persist_reservations(product_id=product_id, records=[record])
        except (IntegrityError, DataError, KeyError, ValueError) as exc:
            logger.error(
                "reservation %s of product %s could not be persisted and was dropped: %s",
                record.get("order_no"),
                product_id,
                type(exc).__name__,
            )


# --- Payment


@transaction.atomic(durable=True)
def order_mark_paid(*, order_no: str, provider: str, event_id: str, amount: Decimal, currency: str) -> Order:
    """Apply a verified payment notification, once. The event id is recorded
    in the same transaction as the state change, so a notification delivered
    again (also concurrently) returns the order unchanged.

    Raises OrderPending while the order is still only a reservation in Redis
    (the provider retries: a 5xx answer), OrderNotFound for an order that
    does not exist (a reservation lost before persistence can never be paid),
    and PaymentMismatch."""
    order = Order.objects.select_for_update().filter(order_no=order_no).first()
    if order is None:
        raise OrderPending() if _reservation_pending(order_no) else OrderNotFound()
    if PaymentEvent.objects.filter(provider=provider, event_id=event_id).exists():
        return order
    if Decimal(amount) != order.amount or currency != order.currency:
        raise PaymentMismatch(expected_amount=str(order.amount), expected_currency=order.currency)
    try:
        with transaction.atomic():
            PaymentEvent.objects.create(
                provider=provider,
                event_id=event_id,
                kind=PaymentEvent.Kind.PAID,
                order=order,
                amount=amount,
                currency=currency,
            )
    except IntegrityError:
        return order  # another delivery of this event won the race

    if order.status == Status.AWAITING_PAYMENT:
        _order_to_paid(order)
    elif order.status == Status.EXPIRED:
        _order_late_payment(order)
    else:
        # A second, different payment for an order already paid: keep the
        # first, and make the extra money visible to an operator.
        note = f"extra payment {provider}:{event_id} received while {order.status}; refund it"
        order.attention_reason = (order.attention_reason + "\n" + note).strip()
        order.save(update_fields=["attention_reason", "updated_at"])
        logger.warning("order %s: %s", order.order_no, note)
    return order


def _order_to_paid(order: Order) -> None:
    order.status = Status.PAID
    order.paid_at = timezone.now()
    order.save(update_fields=["status", "paid_at", "updated_at"])
    transaction.on_commit(lambda: fulfilment_request(order_id=order.id))
    transaction.on_commit(lambda: _gate_mark_paid([order], finish=False))


def _reservation_pending(order_no: str) -> bool:
    """Is this order number still a reservation waiting to be persisted? When
    Redis cannot tell, answer yes: a retried notification is cheap, a payment
    refused for good is not."""
    product_id = order_number_product_id(order_no)
    if product_id is None:
        return False
    try:
        return stock.stock_reservation_get(product_id=product_id, order_no=order_no) is not None
    except RedisError:
        return True


def _order_late_payment(order: Order) -> None:
    """Paid after its reservation expired: deliver if stock remains, else refund.

    A Redis error propagates: the transaction rolls back and the provider
    retries, rather than the order taking keys the gate still offers others."""
    taken = stock.stock_rereserve(
        product_id=order.product_id, order_no=order.order_no, record=order_reservation_record(order, paid=True)
    )
    if taken == 0:
        order_to_refund_pending(order=order, reason="paid after the reservation expired; sold out meanwhile")
        return
    # taken == -1: the gate is not warmed; its rebuild counts this paid order.
    _order_to_paid(order)


def order_to_refund_pending(*, order: Order, reason: str) -> None:
    """Caller holds the order's row lock in a transaction."""
    order.status = Status.REFUND_PENDING
    order.paid_at = order.paid_at or timezone.now()
    order.attention_reason = reason
    order.save(update_fields=["status", "paid_at", "attention_reason", "updated_at"])
    from .tasks import refund_order_task

    transaction.on_commit(lambda: refund_order_task.delay(order.id))
    transaction.on_commit(lambda: _release_for_refund(order))


def _release_for_refund(order: Order) -> None:
    """Return a refunded order's stock and its buyers' shares: through its
    reservation, or, for an order that needed attention (its reservation
    ended at the shortfall), through the shares held for it. Both act once."""
    try:
        stock.stock_release(product_id=order.product_id, order_no=order.order_no, unpaid_only=False)
        stock.stock_buyers_uncount(product_id=order.product_id, order_no=order.order_no)
    except RedisError:
        logger.warning("order %s refunded; Redis unreachable, reconcile releases its share", order.order_no)


@transaction.atomic(durable=True)
def order_mark_refunded(*, order_no: str, provider: str, event_id: str) -> Order:
    """Apply a verified refund notification, once."""
    order = Order.objects.select_for_update().filter(order_no=order_no).first()
    if order is None:
        raise OrderNotFound()
    if PaymentEvent.objects.filter(provider=provider, event_id=event_id).exists():
        return order
    PaymentEvent.objects.create(
        provider=provider,
        event_id=event_id,
        kind=PaymentEvent.Kind.REFUNDED,
        order=order,
        amount=order.amount,
        currency=order.currency,
    )
    if order.status == Status.REFUND_PENDING:
        order.status = Status.REFUNDED
        order.save(update_fields=["status", "updated_at"])
    return order


def order_buyers(order: Order) -> list[str]:
    """The buyer identities the order counts towards (see buyer_identities)."""
    return order.buyer_keys.split() or ["e:" + buyer_identity(email=order.buyer_email)]


def order_reservation_record(order: Order, *, paid: bool) -> dict:
    """The order's reservation as the gate stores it (for rebuilds)."""
    return {
        "order_no": order.order_no,
        "buyers": order_buyers(order),
        "paid": paid,
        "email": order.buyer_email,
        "quantity": order.quantity,
        "token_hash": order.access_token_hash,
        "unit_price": str(order.unit_price),
        "currency": order.currency,
        "created_at": int(order.created_at.timestamp()),
        "reserved_until": int((order.reserved_until or timezone.now()).timestamp()),
    }


# --- Fulfilment
#
# A payment asks for fulfilment (fulfilment_request); a worker then delivers
# its order and goes on draining every paid order in batches until none is
# left (fulfilment_run). Requests coalesce: while one fulfilment task waits in
# the queue, later payments publish nothing, because that task drains their
# orders too when it starts. So a crowd of payments costs a handful of tasks,
# not one no-op task per order queueing behind the batch that served it.


@dataclass
class FulfilReport:
    delivered: list[str]
    short: list[str]

    def add(self, other: "FulfilReport") -> None:
        self.delivered += other.delivered
        self.short += other.short


def _fulfilment_flag_key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:fulfil:requested"


def fulfilment_request(*, order_id: int | None = None) -> None:
    """Publish a fulfilment task for a paid order (after its commit), unless
    one is already queued and not yet started: that one will serve this order.

    The flag marking "one is queued" is cleared by the task as it starts,
    before it looks for paid orders, so an order paid before the clearing is
    seen by that task and one paid after it publishes anew. The flag expires
    (FULFIL_REQUEST_TTL_SECONDS), so a task lost with its worker delays later
    payments by at most that long; reconciliation re-drives its own orders.
    Without Redis to ask, it publishes."""
    from .tasks import fulfil_order_task

    key = _fulfilment_flag_key()
    try:
        first = stock_redis().set(key, order_id or 0, nx=True, ex=settings.FULFIL_REQUEST_TTL_SECONDS)
    except RedisError:
        first = True
    if not first:
        return
    try:
        fulfil_order_task.delay(order_id)
    except Exception:
        # Not queued: let the next payment publish; reconcile re-drives this one.
        logger.exception("fulfilment of order %s could not be queued; reconcile will re-drive it", order_id)
        _fulfilment_flag_clear()


def _fulfilment_flag_clear() -> None:
    try:
        stock_redis().delete(_fulfilment_flag_key())
    except RedisError:
        pass  # it expires


def fulfilment_run(*, order_id: int | None, seconds: float | None = None) -> FulfilReport:
    """A fulfilment task's work: deliver its order, then every paid order in
    batches until none is left. Batches skip orders another worker holds, so
    two workers draining at once take disjoint batches; a full batch asks for
    a second worker (a coalesced request, so at most one waits in the queue).
    When only held orders remain, it waits for the lowest one: it may be held
    by a duplicate payment notification being turned away, not by a worker
    that will deliver it. After `seconds` (FULFIL_RUN_SECONDS) with work left,
    it hands over to a fresh task: the worker's process also serves
    persistence and mail, which must not wait behind a long drain."""
    _fulfilment_flag_clear()
    report = _fulfil_isolating_failures(order_id=order_id) if order_id else FulfilReport(delivered=[], short=[])
    deadline = time.monotonic() + (seconds if seconds is not None else settings.FULFIL_RUN_SECONDS)
    while time.monotonic() < deadline:
        batch = _fulfil_isolating_failures(order_id=None)
        served = len(batch.delivered) + len(batch.short)
        if served >= settings.FULFIL_BATCH_SIZE:
            fulfilment_request()
        elif served == 0:
            held = Order.objects.filter(status=Status.PAID).order_by("id").values_list("id", flat=True).first()
            if held is None:
                return report
            batch = _fulfil_isolating_failures(order_id=held)
        report.add(batch)
    if Order.objects.filter(status=Status.PAID).exists():
        fulfilment_request()
    return report


def _fulfil_isolating_failures(*, order_id: int | None) -> FulfilReport:
    """One batch (with the given order first); if it fails for a reason other
    than the database itself (which the task retries with backoff), its
    orders are served one by one, so one order that cannot be fulfilled fails
    alone, visibly (needs_attention with the error), instead of failing every
    batch it would be the first of, or every task re-driven for it."""
    try:
        return order_fulfil(order_id=order_id)
    except OperationalError:
        raise
    except Exception:
        logger.exception("a fulfilment batch failed; serving its orders one by one")
    report = FulfilReport(delivered=[], short=[])
    lowest = Order.objects.filter(status=Status.PAID).order_by("id").values_list("id", flat=True)
    ids = list(dict.fromkeys([*([order_id] if order_id else []), *lowest[: settings.FULFIL_BATCH_SIZE]]))
    for order_id in ids:
        try:
            report.add(order_fulfil(order_id=order_id, batch_size=1))
        except OperationalError:
            raise
        except Exception as exc:
            logger.exception("order id %s could not be fulfilled", order_id)
            failed = order_fulfilment_failed(
                order_id=order_id, reason=f"fulfilment failed: {type(exc).__name__}: {exc}"
            )
            if failed:
                report.short.append(failed)
    return report


@transaction.atomic(durable=True)
def order_fulfilment_failed(*, order_id: int, reason: str) -> str | None:
    """A paid order whose fulfilment raises goes to needs_attention, where an
    operator sees it and can retry or refund. Returns its number, or None if it
    was no longer paid."""
    order = Order.objects.select_for_update().filter(id=order_id, status=Status.PAID).first()
    if order is None:
        return None
    order.status = Status.NEEDS_ATTENTION
    order.attention_reason = reason[:2000]
    order.save(update_fields=["status", "attention_reason", "updated_at"])
    transaction.on_commit(lambda: _after_delivery([], [order]))
    return order.order_no


def order_fulfil(*, order_id: int | None, batch_size: int | None = None) -> FulfilReport:
    """Deliver a paid order (none: just the batch), and other paid orders with
    it up to the batch size, in one transaction: lock the orders (skipping
    those another worker holds), claim their keys, mark the keys sold, mark
    the orders delivered.
    A delivered order is left alone, so running this twice changes nothing.
    An order whose keys run short goes to needs_attention, never partly filled."""
    batch_size = batch_size or settings.FULFIL_BATCH_SIZE
    delivered: list[Order] = []
    short: list[Order] = []
    with transaction.atomic(durable=True):
        orders = _orders_lock_for_fulfilment(order_id=order_id, batch_size=batch_size)
        by_product: dict[int, list[Order]] = {}
        for order in orders:
            by_product.setdefault(order.product_id, []).append(order)
        now = timezone.now()
        assignments: dict[int, list[int]] = {}
        for product_id, product_orders in by_product.items():
            key_ids = cardkeys_claim(product_id=product_id, count=sum(o.quantity for o in product_orders))
            for order in product_orders:
                if len(key_ids) < order.quantity:
                    order.status = Status.NEEDS_ATTENTION
                    order.attention_reason = (
                        f"keys ran short at fulfilment: needed {order.quantity}, found {len(key_ids)} available"
                    )
                    order.save(update_fields=["status", "attention_reason", "updated_at"])
                    short.append(order)
                    continue
                assignments[order.id], key_ids = key_ids[: order.quantity], key_ids[order.quantity :]
                delivered.append(order)
        # One statement for the keys and one for the orders, however deep the batch.
        expected = sum(len(ids) for ids in assignments.values())
        if cardkeys_mark_sold(assignments=assignments) != expected:
            raise RuntimeError("a key claim lost a row it held")  # rolls the whole batch back
        if delivered:
            changed = Order.objects.filter(id__in=[o.id for o in delivered], status=Status.PAID).update(
                status=Status.DELIVERED, delivered_at=now, updated_at=now
            )
            if changed != len(delivered):
                raise RuntimeError("an order of the batch was no longer paid")  # rolls the whole batch back
            for order in delivered:
                order.status, order.delivered_at = Status.DELIVERED, now
        transaction.on_commit(lambda: _after_delivery(delivered, short))
    return FulfilReport(delivered=[o.order_no for o in delivered], short=[o.order_no for o in short])


def _orders_lock_for_fulfilment(*, order_id: int | None, batch_size: int) -> list[Order]:
    """The task's own order, waiting for its row lock, then up to the batch
    size of other paid orders that nobody holds. Waiting for the own order
    matters: its lock may be held by a duplicate payment notification being
    turned away, and skipping it then would leave it paid and undelivered.
    A second fulfilment of the same order waits, then finds it delivered.
    No deadlock: the only wait is the first lock taken."""
    first = list(Order.objects.select_for_update().filter(id=order_id, status=Status.PAID)) if order_id else []
    others = list(
        Order.objects.select_for_update(skip_locked=True)
        .filter(status=Status.PAID)
        .exclude(id=order_id)
        .order_by("id")[: max(batch_size - len(first), 0)]
    )
    return first + others


def _after_delivery(delivered: list[Order], short: list[Order]) -> None:
    """After a fulfilment commit, for the whole batch at once: one Redis round
    trip ends the reservations, one message queues the mails."""
    from .tasks import send_order_keys_emails_task

    metrics.orders_fulfilled(delivered=delivered, short=short)
    # An order short of keys holds no keys, so it holds no stock either; the
    # counter itself is corrected by reconciliation, which sees the shortfall
    # as drift.
    _gate_mark_paid(delivered, finish=True)
    _gate_mark_paid(short, finish=True, held=True)
    for order in short:
        logger.error("order %s needs attention: %s", order.order_no, order.attention_reason)
    if delivered:
        try:
            send_order_keys_emails_task.delay([order.id for order in delivered])
        except Exception:  # the broker hiccuped: the keys are on the order pages anyway
            logger.exception("%d orders delivered; their emails could not be queued", len(delivered))


def _gate_mark_paid(orders: list[Order], *, finish: bool, held: bool = False) -> None:
    """Free the buyers' unpaid slots (and with finish, end the reservations),
    in one round trip. With held (orders that need attention) their buyers'
    shares stay counted, remembered for a refund or a retry. If Redis cannot
    be reached, reconciliation does it later."""
    if not orders:
        return
    try:
        stock.stock_reservations_paid(
            reservations=[(order.product_id, order.order_no) for order in orders], finish=finish, held=held
        )
    except RedisError:
        logger.warning("%d reservations not updated in Redis; reconcile will", len(orders))


# --- Expiry


def order_expire_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Expire orders unpaid past their reservation and return their stock.
    The database transition comes first; the stock returns after commit (and
    reconciliation returns it if Redis could not be reached then)."""
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        due = list(
            Order.objects.select_for_update(skip_locked=True)
            .filter(status=Status.AWAITING_PAYMENT, reserved_until__lt=now)
            .order_by("id")[:limit]
        )
        if not due:
            return 0
        Order.objects.filter(id__in=[o.id for o in due], status=Status.AWAITING_PAYMENT).update(
            status=Status.EXPIRED, updated_at=now
        )
        transaction.on_commit(lambda: metrics.orders_expired(count=len(due)))
        transaction.on_commit(lambda: _release_reservations(due, unpaid_only=True))
    return len(due)


def _release_reservations(orders: list[Order], *, unpaid_only: bool) -> None:
    for order in orders:
        try:
            stock.stock_release(product_id=order.product_id, order_no=order.order_no, unpaid_only=unpaid_only)
        except RedisError:
            logger.warning("order %s expired; its stock returns at the next reconcile", order.order_no)


# --- Operator actions (admin)


@transaction.atomic(durable=True)
def order_fulfilment_retry(*, order_ids: list[int]) -> int:
    """Send orders that needed attention (keys ran short) back to fulfilment,
    e.g. after the merchant uploaded more keys. Returns how many."""
    orders = list(
        Order.objects.select_for_update().filter(id__in=order_ids, status=Status.NEEDS_ATTENTION).order_by("id")
    )
    retried = 0
    for order in orders:
        # Its reservation ended at the shortfall: take gate stock again, or new
        # keys would be promised twice (to this order and to the next buyer).
        taken = stock.stock_rereserve(
            product_id=order.product_id,
            order_no=order.order_no,
            record=order_reservation_record(order, paid=True),
            buyers_counted=True,
        )
        if taken == 0:
            order.attention_reason += "\nretry refused: still not enough stock"
            order.save(update_fields=["attention_reason", "updated_at"])
            continue
        order.status = Status.PAID
        order.save(update_fields=["status", "updated_at"])
        transaction.on_commit(lambda order_id=order.id: fulfilment_request(order_id=order_id))
        retried += 1
    return retried


@transaction.atomic(durable=True)
def order_refund_start(*, order_ids: list[int], reason: str) -> int:
    """Refund paid orders that cannot be delivered (needs_attention or paid)."""
    orders = list(
        Order.objects.select_for_update().filter(id__in=order_ids, status__in=[Status.NEEDS_ATTENTION, Status.PAID])
    )
    for order in orders:
        order_to_refund_pending(order=order, reason=reason)
    return len(orders)
