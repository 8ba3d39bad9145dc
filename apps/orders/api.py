"""The public JSON API of orders (design.md, "Public JSON API (v1)").

Plain Django views: checkout is the hot path and every layer on it shows in
the benchmark's ceiling ratio."""

from dataclasses import replace

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import InvalidInput, ShopError, shop_error_response
from apps.core.ratelimits import CHECKOUT_BUYER, CHECKOUT_IP, rate_limit
from apps.core.request_body import json_body

from .bot_checks import captcha_verify
from .buyer_context import buyer_context
from .selectors import order_snapshot_get
from .services.checkout import order_checkout


def order_urls(order_no: str) -> dict:
    return {
        # Spelled out rather than reversed: this runs on every checkout.
        "status_url": f"/api/v1/orders/{order_no}",
        "pay_url": f"/api/v1/payments/sandbox/{order_no}/pay",
        "order_url": f"/orders/{order_no}",
    }


@csrf_exempt  # no cookie authentication here, so there is nothing to forge
@require_POST
@rate_limit(CHECKOUT_IP, CHECKOUT_BUYER)  # before checkout: a refused request reserves nothing
def order_create(request):
    try:
        body = json_body(request)
    except ValueError:
        return shop_error_response(InvalidInput("The body must be a JSON object.", fields={}))
    try:
        buyer = buyer_context(request, page_token=request.headers.get("X-Page-Token") or body.get("page_token"))
        # Over the bot checks' soft threshold a captcha is wanted (see bot_checks).
        solved = captcha_verify(
            sku=body.get("sku"), buyer=buyer, key=body.get("captcha_key"), answer=body.get("captcha_value")
        )
        result = order_checkout(
            sku=body.get("sku"),
            email=body.get("email"),
            quantity=body.get("quantity", 1),
            idempotency_key=request.headers.get("Idempotency-Key") or body.get("idempotency_key"),
            buyer=replace(buyer, captcha_solved=solved),
        )
    except ShopError as error:
        return shop_error_response(error)
    return JsonResponse(
        {
            "order_no": result.order_no,
            "status": result.status,
            "access_token": result.access_token,
            **order_urls(result.order_no),
        },
        status=202,
    )


@require_GET
def order_detail(request, order_no: str):
    token = request.headers.get("X-Order-Token") or request.GET.get("token", "")
    snapshot = order_snapshot_get(order_no=order_no, token=token)
    if snapshot is None:
        return JsonResponse({"error": "not_found", "detail": "No such order."}, status=404)
    return JsonResponse(snapshot)
