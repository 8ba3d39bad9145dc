"""The buyer's order pages: the order itself (polling its status) and the
lookup that brings a buyer back to it. Checkout lives in
services/checkout.py (its form page in checkout_page.py), the JSON API in api.py."""

import logging
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlencode

import segno
from django import forms
from django.contrib import messages
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.catalog.models import Product
from apps.core import metrics
from apps.core.client_ip import client_ip
from apps.core.errors import ShopError, shop_error_response
from apps.core.ratelimits import LOOKUP_IP, PAY_IP, rate_limit
from apps.payments.api import buyer_device
from apps.payments.breaker import provider_refusing
from apps.payments.exceptions import PaymentUnavailable
from apps.payments.selectors import payment_method_label
from apps.payments.services import PAYABLE_BY_METHOD, payment_start, payments_query_started

from .exceptions import OrderNotCancellable, OrderNotFound, OrderNotPlaced, OrderPending
from .grants import order_access_get, order_grant_lookup, order_session_token, orders_granted
from .identity import order_number_product_id
from .models import Order
from .order_links import OrderLinkExpired, OrderLinkInvalid, order_link_check
from .poll import order_poll_check, order_poll_remember, poll_after_ms, poll_body, poll_headers, poll_not_modified
from .selectors import order_find_for_lookup, order_lost
from .services.cancel import order_cancel
from .status_records import order_status_etag

logger = logging.getLogger(__name__)

Status = Order.Status
# The page stops polling once nothing more can happen without an operator.
FINAL_STATES = frozenset({Status.DELIVERED, Status.REFUNDED})


class OrderLookupForm(forms.Form):
    order_no = forms.CharField(label=_("Order number"), max_length=32)
    email = forms.EmailField(label=_("Email"), max_length=254)


def _status_url(order_no: str, token: str | None) -> str:
    url = reverse("orders:status", kwargs={"order_no": order_no})
    # The link's token goes along, so polling works even where cookies do not.
    return f"{url}?token={token}" if token else url


@never_cache  # the page can hold the keys: no shared or browser cache
@require_GET
def order_detail(request, order_no: str):
    access = order_access_get(request=request, order_no=order_no)
    if access is None:
        if _lost(request, order_no):
            return _not_placed_page(request, order_no)
        return _lookup_asking_for_email(request, order_no)
    return _order_page(request, access)


def _lookup_asking_for_email(request, order_no: str):
    """An order address this browser may not open (no token, a wrong one, an
    unknown number): the lookup form, its number filled in, asking for the
    email. An unknown order gets the very same page, so it reveals nothing;
    the JSON endpoints keep their 404."""
    form = OrderLookupForm(initial={"order_no": order_no[:32]})
    note = _("To open this order in this browser, enter the email you bought with.")
    return render(request, "orders/lookup.html", {"form": form, "note": note})


@never_cache
@require_GET
def order_open(request, order_no: str, signature: str):
    """The delivery mail's signed link (apps.orders.order_links): grants this
    browser the order, as a lookup would, then shows the clean order page.
    Expired or tampered: the lookup page, number filled in, saying why. Not
    rate limited as the lookup is: a signature cannot be guessed, and buyers
    behind one address all open their mails after a flash sale."""
    try:
        order_link_check(order_no=order_no, signature=signature)
    except OrderLinkExpired:
        messages.error(request, _("This link has expired. Enter the email you bought with to open your order."))
        return _lookup_redirect(order_no)
    except OrderLinkInvalid:
        messages.error(request, _("This link is not valid. Enter the email you bought with to open your order."))
        return _lookup_redirect(order_no)
    order = Order.objects.using("default").filter(order_no=order_no).only("order_no", "buyer_email").first()
    if order is None:  # signed by this shop, so only an order since deleted
        return _lookup_redirect(order_no)
    # As the lookup page: a new session id with the grant (session fixation).
    request.session.cycle_key()
    order_grant_lookup(session=request.session, order_no=order.order_no, email=order.buyer_email)
    return redirect("orders:detail", order_no=order.order_no)


def _lookup_redirect(order_no: str):
    return redirect(f"{reverse('orders:lookup')}?{urlencode({'order_no': order_no[:32]})}")


# A page of this browser's orders lists at most this many (the session holds
# at most MAX_GRANTS of each kind of grant).
MY_ORDERS_MAX = 20


@never_cache
@require_GET
def my_orders(request):
    """The orders this browser placed or opened (checkout, a link with its
    token, the lookup page, the mail link), newest first, as its session's
    grants remember them: no account needed, and another browser sees none."""
    orders = orders_granted(session=request.session, limit=MY_ORDERS_MAX) if request.session.session_key else []
    return render(request, "orders/mine.html", {"orders": orders})


def _not_placed_page(request, order_no: str):
    product_id = order_number_product_id(order_no)
    product = Product.objects.filter(id=product_id, is_active=True).only("sku", "title").first()
    context = {"order_no": order_no, "message": OrderNotPlaced.default_detail, "product": product}
    return render(request, "orders/not_placed.html", context, status=OrderNotPlaced.http_status)


def _lost(request, order_no: str) -> bool:
    """Did the shop accept this order and then lose it before recording it?
    Asked with the link's token, or the one checkout left in the session (a
    lookup grant carries no token, and needs a row to exist anyway)."""
    return order_lost(
        order_no=order_no,
        token=request.GET.get("token") or order_session_token(request=request, order_no=order_no) or "",
    )


def _order_page(request, access, *, qr_code: str = "", qr_method: str = ""):
    snapshot = access.snapshot
    methods = snapshot.get("payment_methods", [])
    if any(provider_refusing(method) for method in methods):
        # Say so before the buyer tries; the buttons stay, a later try may pass.
        messages.warning(request, PaymentUnavailable.default_detail)
    deadline = snapshot.get("pay_deadline")
    seconds_to_pay = (
        max(0, int((datetime.fromisoformat(deadline) - timezone.now()).total_seconds())) if deadline else None
    )
    return render(
        request,
        "orders/detail.html",
        {
            "order": snapshot,
            # Not `order.keys` in the template: on a dict without keys yet that
            # would be dict.keys(), the field names.
            "keys": snapshot.get("keys", []),
            "amount": Decimal(snapshot["amount"]),
            "states": Status,
            "methods": [(method, payment_method_label(method)) for method in methods],
            "seconds_to_pay": seconds_to_pay,
            # A QR code the buyer scans with the provider's app, drawn here (no third-party service).
            "qr_svg": mark_safe(segno.make(qr_code, error="m").svg_inline(scale=5)) if qr_code else "",  # noqa: S308
            "qr_label": payment_method_label(qr_method) if qr_method else "",
            "status_url": _status_url(access.snapshot["order_no"], access.token),
            # The link's token goes along on the page's forms too, where cookies do not.
            "token": access.token,
            "final": snapshot["status"] in FINAL_STATES,
            # The first poll is already conditional and paced by the server;
            # it is a 200 all the same unless an earlier poll stored the
            # record (rendering does not: docs/architecture.md).
            "etag": order_status_etag(snapshot["status"]),
            "poll_after_ms": poll_after_ms(
                status=snapshot["status"],
                placed_at=access.record.placed_at if access.record is not None else None,
                manual=snapshot.get("delivery") == "manual",
            ),
            # Not in the snapshot (the API's body); None while the order is queued in the gate.
            "placed_at": Order.objects.using("default")
            .filter(order_no=snapshot["order_no"])
            .values_list("created_at", flat=True)
            .first(),
        },
    )


@never_cache
@require_POST
@rate_limit(PAY_IP, page=True)
def order_pay(request, order_no: str):
    """The buyer chose a payment method on the order page: open the payment at
    its provider, then go there to pay, or scan its QR code here."""
    access = order_access_get(request=request, order_no=order_no)
    if access is None:
        raise Http404
    method = request.POST.get("method", "")
    snapshot = access.snapshot
    if snapshot["status"] not in PAYABLE_BY_METHOD or method not in snapshot.get("payment_methods", []):
        messages.error(request, _("This order cannot be paid that way now."))
        return redirect(_detail_url(order_no, access.token))
    try:
        start = payment_start(
            snapshot=snapshot,
            method=method,
            token=access.token,
            device=buyer_device(request),
            client_ip=client_ip(request),
        )
    except PaymentUnavailable as error:
        messages.warning(request, error.detail)
        return redirect(_detail_url(order_no, access.token))
    if start.pay_url:
        return redirect(start.pay_url)
    return _order_page(request, access, qr_code=start.qr_code, qr_method=method)


@never_cache
@require_POST
@rate_limit(PAY_IP, page=True)
def order_cancel_page(request, order_no: str):
    """The buyer cancelled the unpaid order from its page."""
    access = order_access_get(request=request, order_no=order_no)
    if access is None:
        raise Http404
    try:
        order_cancel(order_no=order_no)
    except (OrderNotCancellable, OrderPending) as error:
        messages.error(request, error.detail)
    return redirect(_detail_url(order_no, access.token))


@never_cache
@require_POST
@rate_limit(PAY_IP, page=True)
def order_payment_check(request, order_no: str):
    """ "I have paid": ask the providers the order's payment was started with,
    now, rather than wait for a notification that may be late or lost."""
    access = order_access_get(request=request, order_no=order_no)
    if access is None:
        raise Http404
    try:
        paid = payments_query_started(order_no=order_no) is not None
    except ShopError as error:
        messages.warning(request, error.detail)
    else:
        if paid:
            messages.success(request, _("Your payment has arrived. Your keys are on the way."))
        else:
            messages.info(request, _("No payment has arrived yet. If you have just paid, check again in a moment."))
    return redirect(_detail_url(order_no, access.token))


def _detail_url(order_no: str, token: str | None) -> str:
    url = reverse("orders:detail", kwargs={"order_no": order_no})
    return f"{url}?token={token}" if token else url


@never_cache
@require_GET
def order_status(request, order_no: str):
    """What the order page polls: the same body as GET /api/v1/orders/<no>, for
    the same people as the page (a lookup grant has no token for the API).
    An unchanged order polled with its token and ETag is answered 304 before
    the session or MariaDB is touched (apps.orders.poll)."""
    check = order_poll_check(
        order_no=order_no, token=request.GET.get("token"), if_none_match=request.headers.get("If-None-Match")
    )
    if check.unchanged is not None:
        return poll_not_modified(check.unchanged)
    access = order_access_get(request=request, order_no=order_no)
    if access is None:
        metrics.order_polled(answer="not_found")
        return shop_error_response(OrderNotPlaced() if _lost(request, order_no) else OrderNotFound())
    order_poll_remember(check=check, record=access.record)
    body, etag, after_ms = poll_body(snapshot=access.snapshot, record=access.record)
    return poll_headers(JsonResponse(body), etag=etag, after_ms=after_ms)


@never_cache
@require_http_methods(["GET", "POST"])
@rate_limit(LOOKUP_IP, page=True)
def order_lookup(request):
    """Order number + email open the order in this browser. A wrong pair and an
    unknown order get the same answer, so the page reveals nothing."""
    if request.method == "POST":
        form = OrderLookupForm(request.POST)
    else:  # the mail link and an order address send the number along
        form = OrderLookupForm(initial={"order_no": request.GET.get("order_no", "")[:32]})
    if request.method == "POST" and form.is_valid():
        order = order_find_for_lookup(order_no=form.cleaned_data["order_no"], email=form.cleaned_data["email"])
        if order is not None:
            # Access was just granted: a new session id, so one planted before
            # (session fixation) does not get it too.
            request.session.cycle_key()
            order_grant_lookup(session=request.session, order_no=order.order_no, email=form.cleaned_data["email"])
            return redirect("orders:detail", order_no=order.order_no)
        form.add_error(None, _("No order matches this order number and email."))
    return render(request, "orders/lookup.html", {"form": form})
