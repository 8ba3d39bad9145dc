"""The webhook every provider calls, and the sandbox provider's own pages
(its JSON API is in api.py)."""

import logging
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.db import DatabaseError
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from apps.core import metrics
from apps.core.errors import ShopError, shop_error_response
from apps.core.ratelimits import PAY_IP, rate_limit
from apps.core.request_body import request_body
from apps.orders.grants import order_access_get
from cardshop.db_router import primary_reads

from .exceptions import (
    NotificationIgnored,
    NotificationNotRecorded,
    OrderNotPayable,
    PaymentUnavailable,
    UnknownProvider,
)
from .providers import provider_get
from .providers.base import WebhookAnswer
from .providers.sandbox import SandboxProvider
from .services import SANDBOX_PAYABLE, payment_notification_process, sandbox_payment_make

logger = logging.getLogger(__name__)


@csrf_exempt  # called by the provider's servers; the signature is the authentication
@require_http_methods(["GET", "POST"])  # epay notifies by GET
# A GET that writes: the middleware would let it read the replica (a safe
# method), and a notification must decide on the primary's rows.
@primary_reads()
def webhook(request, provider: str):
    """2xx only once the state change is committed, so a provider retries on any
    failure; 4xx with the reason for a notification that will never be accepted.
    The body is what the provider expects ("success" for epay and Alipay), or
    the shop's JSON. No per-client rate limit: a provider sends every
    notification from a few addresses, and a refused one would only be retried."""
    if request.method == "GET" and not _notifies_by_get(provider):
        return HttpResponseNotAllowed(["POST"])
    try:
        order = _notification_apply(provider, request)
    except NotificationIgnored:
        # Genuine, but nothing the shop acts on (another event type): 2xx, or
        # the provider would send it again and again.
        metrics.payment_notification(provider=provider, outcome="ignored")
        answer = _provider_answer(provider, accepted=True)
        if answer is None:
            return JsonResponse({"status": "ignored"})
        return HttpResponse(answer.body, content_type=answer.content_type)
    except ShopError as error:
        metrics.payment_notification(provider=provider, outcome=error.code)
        logger.warning("webhook %s refused: %s (%s)", provider, error.code, error.detail)
        answer = _provider_answer(provider, accepted=False, detail=error.code)
        if answer is None:
            return shop_error_response(error)
        response = HttpResponse(answer.body, content_type=answer.content_type, status=error.http_status)
        if error.retry_after:
            response["Retry-After"] = str(error.retry_after)
        return response
    metrics.payment_notification(provider=provider, outcome="accepted")
    answer = _provider_answer(provider, accepted=True)
    if answer is None:
        return JsonResponse({"status": "ok", "order_no": order.order_no, "order_status": order.status})
    return HttpResponse(answer.body, content_type=answer.content_type)


def _notification_apply(provider: str, request):
    try:
        return payment_notification_process(
            # Too large: refused in the provider's terms, not Django's HTML page.
            provider_name=provider,
            body=request_body(request),
            headers=request.headers,
            query=request.GET,
        )
    except DatabaseError as exc:
        # Rolled back, nothing changed: the provider must send it again, told in its own terms.
        logger.exception("webhook %s: the database failed; the provider will send it again", provider)
        raise NotificationNotRecorded() from exc


def _notifies_by_get(name: str) -> bool:
    try:
        return provider_get(name=name).notifies_by_get
    except UnknownProvider:
        return False


def _provider_answer(name: str, *, accepted: bool, detail: str = "") -> WebhookAnswer | None:
    try:
        return provider_get(name=name).notification_answer(accepted=accepted, detail=detail)
    except UnknownProvider:
        return None


def _order_page_url(order_no: str, token: str | None) -> str:
    url = reverse("orders:detail", kwargs={"order_no": order_no})
    return f"{url}?token={token}" if token else url


@never_cache
@require_http_methods(["GET", "POST"])
@rate_limit(PAY_IP, page=True)
def sandbox_pay_page(request, order_no: str):
    """The sandbox's payment page: the amount, "Pay" and "Cancel". Reached with
    the order's token (?token=) or a session grant, like the order page."""
    access = order_access_get(request=request, order_no=order_no)
    if access is None or SandboxProvider.name not in settings.PAYMENT_PROVIDERS:
        raise Http404
    snapshot = access.snapshot
    back_url = _order_page_url(order_no, access.token)
    if request.method == "POST":
        if "pay" in request.POST:
            try:
                sandbox_payment_make(snapshot=snapshot)
            except OrderNotPayable:
                pass  # already paid or ended: the order page says which
            except PaymentUnavailable as error:
                # The same page again, saying so: the buyer can retry from here.
                messages.error(request, error.detail)
                response = _pay_page(request, snapshot, back_url, status=error.http_status)
                response["Retry-After"] = str(error.retry_after)
                return response
        return redirect(back_url)
    return _pay_page(request, snapshot, back_url)


def _pay_page(request, snapshot: dict, back_url: str, status: int = 200):
    return render(
        request,
        "payments/sandbox_pay.html",
        {
            "order": snapshot,
            "amount": Decimal(snapshot["amount"]),
            "payable": snapshot["status"] in SANDBOX_PAYABLE,
            "back_url": back_url,
        },
        status=status,
    )
