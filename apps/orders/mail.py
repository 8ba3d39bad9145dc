"""The delivery email: the buyer's keys, decrypted only to be sent.

Sending goes through the "mail" circuit breaker: while the mail server is
failing, the task fails fast (BreakerOpen) and retries later instead of each
one waiting on the server's timeout. The order is delivered either way; the
keys are on its page."""

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from apps.cardkeys.selectors import order_keys_reveal
from apps.core.breakers import breaker_call

from .models import Order

# Mails sent are marked this many at a time, one statement each: a commit
# per mail halved the fulfilment drain of the benchmark (the workers that
# fulfil also mail), and a mail message delivered again resends at most the
# mails of its last unmarked group.
MARK_EVERY = 10


def order_keys_emails_send(*, order_ids: list[int]) -> dict[int, Exception]:
    """Send each delivered order's keys, once: orders already mailed are
    skipped. Returns the mails that failed, by order id (BreakerOpen while
    the mail breaker is open, or what the mail backend raised)."""
    failed: dict[int, Exception] = {}
    sent: list[int] = []
    orders = Order.objects.select_related("product").filter(
        id__in=order_ids, status=Order.Status.DELIVERED, keys_emailed_at__isnull=True
    )
    for order in orders:
        try:
            _keys_email_send(order)
            sent.append(order.id)
        except Exception as exc:
            failed[order.id] = exc
        if len(sent) >= MARK_EVERY:
            _mark_emailed(sent)
            sent = []
    _mark_emailed(sent)
    return failed


def order_keys_email_send(*, order_id: int) -> None:
    """order_keys_emails_send for one order; raises what its mail raised."""
    failed = order_keys_emails_send(order_ids=[order_id])
    if failed:
        raise failed[order_id]


def _keys_email_send(order: Order) -> None:
    keys = order_keys_reveal(order_id=order.id)
    with translation.override(settings.LANGUAGE_CODE):
        context = {"order": order, "keys": keys, "site_url": settings.SITE_URL}
        subject = _("Your keys for order %(order_no)s") % {"order_no": order.order_no}
        body = render_to_string("orders/email_keys.txt", context)
    breaker_call("mail", send_mail, subject, body, settings.DEFAULT_FROM_EMAIL, [order.buyer_email])


def _mark_emailed(order_ids: list[int]) -> None:
    if order_ids:
        Order.objects.filter(id__in=order_ids, keys_emailed_at__isnull=True).update(keys_emailed_at=timezone.now())
