"""The delivery email: the buyer's keys, decrypted only to be sent.

Sending goes through the "mail" circuit breaker: while the mail server is
failing, the task fails fast (BreakerOpen) and retries later instead of each
one waiting on the server's timeout. The order is delivered either way; the
keys are on its page."""
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils import translation
from django.utils.translation import gettext as _

from apps.cardkeys.selectors import order_keys_reveal
from apps.core.breakers import breaker_call

from .models import Order


def order_keys_email_send(*, order_id: int) -> None:
    """Send a delivered order's keys, once: an order already mailed is
    skipped (it is marked right after its mail went out; a worker lost in
    between can still send one twice). Raises BreakerOpen while the mail
    breaker is open, and what the mail backend raises."""
    order = Order.objects.select_related("product").get(id=order_id)
    if order.status != Order.Status.DELIVERED or order.keys_emailed_at is not None:
        return
    keys = order_keys_reveal(order_id=order.id)
    with translation.override(settings.LANGUAGE_CODE):
        context = {"order": order, "keys": keys, "site_url": settings.SITE_URL}
        subject = _("Your keys for order %(order_no)s") % {"order_no": order.order_no}
        body = render_to_string("orders/email_keys.txt", context)
    breaker_call("mail", send_mail, subject, body, settings.DEFAULT_FROM_EMAIL, [order.buyer_email])
    Order.objects.filter(id=order.id, keys_emailed_at__isnull=True).update(keys_emailed_at=timezone.now())
