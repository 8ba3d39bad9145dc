"""The buyer's order pages: the order itself (polling its status) and the
lookup that brings a buyer back to it. Checkout lives in
services/checkout.py (its form page in checkout_page.py), the JSON API in api.py."""

import logging
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from apps.core.errors import shop_error_response
from apps.core.ratelimits import LOOKUP_IP, rate_limit
from apps.payments.exceptions import PaymentUnavailable, UnknownProvider
from apps.payments.services import payment_url_get

from .exceptions import OrderNotFound
from .grants import order_access_get, order_grant_lookup
from .models import Order
from .selectors import order_find_for_lookup

logger = logging.getLogger(__name__)

Status = Order.Status
# The page stops polling once nothing more can happen without an operator.
FINAL_STATES = frozenset({Status.DELIVERED, Status.REFUNDED})
# The pay button shows while the reservation holds; a queued order is payable
# too: the provider's notification is retried until the order is persisted.
PAYABLE_STATES = frozenset({Status.QUEUED, Status.AWAITING_PAYMENT})


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
        raise Http404
    snapshot = access.snapshot
    pay_url = None
    if snapshot["status"] in PAYABLE_STATES:
        try:
            pay_url = payment_url_get(snapshot=snapshot, token=access.token)
        except UnknownProvider:
            # Misconfigured: the buyer still sees the order, without a pay button.
            logger.error("PAYMENT_DEFAULT_PROVIDER %r is not enabled", settings.PAYMENT_DEFAULT_PROVIDER)
        except PaymentUnavailable as error:
            # The provider is failing: no pay button, and the reason.
            messages.warning(request, error.detail)
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
            "pay_url": pay_url,
            "status_url": _status_url(order_no, access.token),
            "final": snapshot["status"] in FINAL_STATES,
        },
    )


@never_cache
@require_GET
def order_status(request, order_no: str):
    """What the order page polls: the same body as GET /api/v1/orders/<no>, for
    the same people as the page (a lookup grant has no token for the API)."""
    access = order_access_get(request=request, order_no=order_no)
    if access is None:
        return shop_error_response(OrderNotFound())
    return JsonResponse(access.snapshot)


@never_cache
@require_http_methods(["GET", "POST"])
@rate_limit(LOOKUP_IP, page=True)
def order_lookup(request):
    """Order number + email open the order in this browser. A wrong pair and an
    unknown order get the same answer, so the page reveals nothing."""
    form = OrderLookupForm(request.POST or None)
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
