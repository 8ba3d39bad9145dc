"""The delivery email: the buyer's keys, decrypted only to be sent, at most once.

At most once: each order's mail is claimed in the gate Redis before it is
sent (`SET NX` of a lease, MAIL_LEASE_SECONDS) and marked sent there the
moment the mail server has accepted it (the same key, now "sent", kept a
day). A second worker, a message redelivered after its worker was killed, or
reconciliation's re-drive finds the lease (busy: try again later) or the
mark (skip). The database mark, `Order.keys_emailed_at`, stays the record;
it is written MARK_EVERY mails at a time, because a commit per mail halved
the fulfilment drain (docs/benchmarks.md), and the Redis mark covers the
mails sent since the last group.

When a mail can still go out twice, and how often:
- the worker dies (SIGKILL, power) after the mail server accepted the mail
  (its "250" to the end of DATA) and before the Redis mark is set, which
  _message_send does right after the reply, before anything else: one Redis
  round trip (0.05 ms median, 3 ms p99 on a loaded test machine) against the
  tens to hundreds of milliseconds of an SMTP delivery. At most one mail per
  killed worker process, with odds of about (round trip / send time) per kill;
  none in the worker-kill test (apps/orders/tests/test_mail_worker_kill.py).
  After the lease expires, the mail is sent again.
- the SMTP call itself fails after the server accepted the message (the
  connection drops before its reply arrives): the lease is given back and the
  retry sends it again. The server's acceptance is invisible to us there.
- the gate Redis loses its data (no persistence, a failover to an empty
  replica) AND a worker dies before writing its group's database marks: the
  mails of that group (at most MARK_EVERY - 1) go out again. Either fault
  alone sends none twice: the Redis mark outlives the worker, the database
  mark outlives Redis.
- a send that outlasts the lease (MAIL_LEASE_SECONDS, well over the SMTP
  timeouts) while the order is re-driven meanwhile.

Redis unreachable: nothing is sent unclaimed; the marks of what was sent are
written and the task retries later (MailClaimUnavailable).

Sending goes through the "mail" circuit breaker: while the mail server is
failing, the task fails fast (BreakerOpen) and retries later instead of each
one waiting on the server's timeout. The order is delivered either way; the
keys are on its page."""

import logging
import secrets
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from redis.commands.core import Script
from redis.exceptions import RedisError

from apps.core.breakers import breaker_call
from apps.stock.redis import redis_text, stock_redis
from apps.stock.redis_keys import mail_claim_key, mail_queued_key

from .models import Order
from .order_links import order_link_path
from .selectors import order_delivery_reveal

logger = logging.getLogger(__name__)

# Database marks written this many at a time, one statement each: a commit
# per mail halved the fulfilment drain of the benchmark (the workers that
# fulfil also mail). The Redis mark covers the mails of the group meanwhile.
MARK_EVERY = 10
# The Redis "sent" mark outlives any redelivery, retry chain (about 1.5 hours)
# or reconciliation run that could still carry the order without its database
# mark; after that the database mark is the only record, as it is meant to be.
SENT_MARK_SECONDS = 24 * 60 * 60
SENT = "sent"
RELEASE_LUA = Path(__file__).resolve().parent / "lua" / "mail_release.lua"


class MailClaimUnavailable(Exception):
    """The gate Redis could not be asked who sends a mail: nothing was sent
    unclaimed; try again in `retry_after` seconds."""

    retry_after = 5


class MailBusy(Exception):
    """Another worker holds the order's mail lease (sending it now, or killed
    while sending it): try again once the lease may have ended."""

    def __init__(self, order_id: int, retry_after: int):
        super().__init__(order_id, retry_after)  # both in args, so the error pickles
        self.retry_after = retry_after


@dataclass
class MailReport:
    """What one run did not send: `failed` by order id (BreakerOpen, or what
    the mail backend raised), `busy` the orders another worker held."""

    failed: dict[int, Exception] = field(default_factory=dict)
    busy: list[int] = field(default_factory=list)


def order_keys_emails_send(*, order_ids: list[int]) -> MailReport:
    """Send each delivered order's keys, at most once: orders mailed already
    (by the database or the Redis mark) are skipped, orders another worker
    holds are reported busy. One SMTP session serves the run, and its QUIT
    comes after the marks: the time between the server's acceptance and the
    Redis mark is one round trip. Raises MailClaimUnavailable (after writing
    the marks of what was sent) when the gate Redis cannot be reached."""
    report = MailReport()
    sent: list[int] = []
    orders = Order.objects.select_related("product").filter(
        id__in=order_ids, status=Order.Status.DELIVERED, keys_emailed_at__isnull=True
    )
    connection = get_connection()
    try:
        for order in orders:
            if _order_mail_send(order, connection=connection, report=report):
                sent.append(order.id)
            if len(sent) >= MARK_EVERY:
                _mark_emailed(sent)
                sent = []
    finally:
        _mark_emailed(sent)
        _connection_close(connection)
    return report


def order_keys_email_send(*, order_id: int) -> None:
    """order_keys_emails_send for one order; raises what its mail raised
    (MailBusy while another worker holds it)."""
    report = order_keys_emails_send(order_ids=[order_id])
    if order_id in report.failed:
        raise report.failed[order_id]
    if report.busy:
        raise MailBusy(order_id, _lease_left(order_id))


def order_keys_emails_take_for_redrive(*, order_ids: list[int]) -> list[int]:
    """Of these delivered orders without a database mail mark, the ones whose
    mail nobody carries, now marked queued for MAIL_REDRIVE_AFTER_SECONDS so
    the next reconciliation leaves them to the message about to be queued.
    In flight, and left alone: a lease (a worker sends it now), a queued mark
    (a re-drive or a retry alone waits in the broker). A Redis "sent" mark
    (its worker died before the database mark) gets its database mark here.
    Raises RedisError: without Redis nothing is re-driven."""
    if not order_ids:
        return []
    client = stock_redis()
    with client.pipeline(transaction=False) as pipe:
        for order_id in order_ids:
            pipe.get(mail_claim_key(order_id))
        claims = pipe.execute()
    _mark_emailed([i for i, claim in zip(order_ids, claims, strict=True) if _is_sent(claim)])
    free = [i for i, claim in zip(order_ids, claims, strict=True) if claim is None]
    with client.pipeline(transaction=False) as pipe:
        for order_id in free:
            pipe.set(mail_queued_key(order_id), "1", nx=True, ex=settings.MAIL_REDRIVE_AFTER_SECONDS)
        taken = pipe.execute()
    return [i for i, ok in zip(free, taken, strict=True) if ok]


def order_keys_email_retry_queued(*, order_id: int, countdown: int) -> None:
    """A mail retried alone is in flight until its retry runs: reconciliation
    leaves it alone meanwhile. Best effort: without Redis a re-drive may
    queue it once more, and the claim still sends it once."""
    try:
        stock_redis().set(mail_queued_key(order_id), "1", ex=max(countdown, 0) + settings.MAIL_LEASE_SECONDS)
    except RedisError:
        logger.warning("order id %s: its mail retry is not marked queued; a re-drive may queue it too", order_id)


def _order_mail_send(order: Order, *, connection: BaseEmailBackend, report: MailReport) -> bool:
    """Claim, send and mark one order's mail. True when its mail is sent (now
    or earlier, per its Redis mark) and wants its database mark."""
    token = secrets.token_hex(8)
    client = stock_redis()
    try:
        if not client.set(mail_claim_key(order.id), token, nx=True, ex=settings.MAIL_LEASE_SECONDS):
            if _is_sent(client.get(mail_claim_key(order.id))):
                return True  # sent by a worker that died before its database mark
            report.busy.append(order.id)
            return False
    except RedisError as exc:
        raise MailClaimUnavailable(f"order id {order.id}: no mail claim ({exc})") from exc
    try:
        marked = breaker_call("mail", _message_send, connection, _keys_email(order), order_id=order.id)
    except Exception as exc:
        report.failed[order.id] = exc
        _lease_release(order.id, token)
        _connection_close(connection)  # the next mail starts a fresh session
        return False
    if not marked:
        # Without the Redis mark the lease would expire and let the mail go
        # again: the database mark, at once, for this one.
        logger.warning("order id %s: mail sent but not marked in Redis; marking the database now", order.id)
        _mark_emailed([order.id])
    return True


def _keys_email(order: Order) -> EmailMessage:
    delivery = order_delivery_reveal(order)
    # In the buyer's language at checkout, not the worker's or the shop's.
    with translation.override(order.language or settings.LANGUAGE_CODE):
        # A signed link: the mail may be opened in a browser that never saw the order.
        order_url = settings.SITE_URL + order_link_path(order_no=order.order_no)
        context = {
            "order": order,
            "keys": delivery.keys,
            "content": delivery.content,
            "site_url": settings.SITE_URL,
            "order_url": order_url,
        }
        if delivery.content:
            subject = _("Your order %(order_no)s has been delivered") % {"order_no": order.order_no}
        else:
            subject = _("Your keys for order %(order_no)s") % {"order_no": order.order_no}
        # The template turns autoescape off: a plain-text mail carries keys
        # and titles byte for byte (K3&<i> is not K3&amp;&lt;i&gt;).
        body = render_to_string("orders/email_keys.txt", context)
    return EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [order.buyer_email])


def _message_send(connection: BaseEmailBackend, message: EmailMessage, *, order_id: int) -> bool:
    """Send, then mark the order's mail sent in Redis before anything else
    runs (the breaker's own bookkeeping included): what stands between the
    server's acceptance and the mark is one round trip. Returns whether the
    Redis mark was set."""
    # Opened here, not by send_messages, so that send_messages leaves the
    # session open: its QUIT would stand between acceptance and the mark.
    connection.open()
    connection.send_messages([message])
    try:
        stock_redis().set(mail_claim_key(order_id), SENT, ex=SENT_MARK_SECONDS)
    except RedisError:
        return False
    return True


def _connection_close(connection: BaseEmailBackend) -> None:
    try:
        connection.close()
    except Exception:  # the session is over either way
        logger.debug("closing the mail session failed", exc_info=True)


@cache
def _release_script() -> Script:
    return stock_redis().register_script(RELEASE_LUA.read_text())


def _lease_release(order_id: int, token: str) -> None:
    """Give the lease back (only if still ours) so the retry can send; if
    Redis is gone meanwhile, the lease simply expires."""
    try:
        _release_script()(keys=[mail_claim_key(order_id)], args=[token], client=stock_redis())
    except RedisError:
        logger.warning("order id %s: mail lease not released; it expires", order_id)


def _lease_left(order_id: int) -> int:
    try:
        left = stock_redis().ttl(mail_claim_key(order_id))
    except RedisError:
        left = -1
    return max(int(left), 1) if left and left > 0 else settings.MAIL_LEASE_SECONDS


def _is_sent(value) -> bool:
    return value is not None and redis_text(value) == SENT


def _mark_emailed(order_ids: list[int]) -> None:
    if order_ids:
        Order.objects.filter(id__in=order_ids, keys_emailed_at__isnull=True).update(keys_emailed_at=timezone.now())
