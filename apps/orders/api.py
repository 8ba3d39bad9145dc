"""The public JSON API of orders (the README's API table; /api/v1/schema).

Checkout is the hot path: its view is a lean ShopAPIView and reads the JSON
body once (the rate limits read it first); docs/benchmarks.md has what DRF
costs it."""

from dataclasses import replace

from captcha.helpers import captcha_image_url
from captcha.models import CaptchaStore
from django.http import JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.core import metrics
from apps.core.api import BODY_NOT_JSON, ShopAPIView
from apps.core.errors import InvalidInput, RateLimited, RequestTooLarge, UnsupportedMediaType
from apps.core.openapi import ORDER_TOKEN_HEADER, error_responses, retry_after_header
from apps.core.ratelimits import CHECKOUT_BUYER, CHECKOUT_IP, PAY_IP
from apps.core.request_body import json_body
from apps.coupons.exceptions import (
    CouponExpired,
    CouponInvalid,
    CouponLimitExceeded,
    CouponNotApplicable,
    CouponUsedUp,
)

from .bot_checks import captcha_verify
from .buyer_context import buyer_context
from .exceptions import (
    CaptchaInvalid,
    CaptchaRequired,
    IdempotencyKeyReused,
    LimitExceeded,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotPlaced,
    OrderPending,
    PageTokenInvalid,
    ProductNotFound,
    SaleEnded,
    SaleNotStarted,
    SalePaused,
    SoldOut,
    TooFast,
    UnpaidLimit,
)
from .poll import order_poll_check, order_poll_remember, poll_body, poll_headers, poll_not_modified
from .selectors import order_buyer_read, order_lost, order_snapshot_get
from .serializers import CaptchaSerializer, OrderCreatedSerializer, OrderCreateRequestSerializer, OrderSerializer
from .services.cancel import order_cancel
from .services.checkout import order_checkout


def order_urls(order_no: str) -> dict:
    return {
        # Spelled out rather than reversed: this runs on every checkout.
        "status_url": f"/api/v1/orders/{order_no}",
        "pay_url": f"/api/v1/payments/sandbox/{order_no}/pay",
        "order_url": f"/orders/{order_no}",
    }


# For the schema's examples: reversing while the URLconf that imports this
# module is still loading would fail.
CAPTCHA_URL = "/api/v1/captcha"


class OrderCreateView(ShopAPIView):
    rate_limits = (CHECKOUT_IP, CHECKOUT_BUYER)
    # No token, no cookie checked: only a JSON body (which a browser sends
    # cross-site only after a CORS preflight this API never grants) places an order.
    json_body_required = True

    @extend_schema(
        operation_id="order_create",
        summary="Checkout: reserve keys for an order",
        description="Reserves stock in one step and answers at once; the order is written to the database "
        "moments later (its status is `queued` until then). Pay within the reservation's time, or it expires. "
        "The body must be sent as `Content-Type: application/json` (415 otherwise) and `quantity` must be a JSON "
        "integer. Limits count the buyer's mailbox: case, a `+tag` and, for Gmail, dots are ignored; the order "
        "keeps the email as typed. One client address holds at most `UNPAID_CAP_PER_IP` unpaid orders per "
        "product (`unpaid_limit`).",
        request=OrderCreateRequestSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Any string unique to this purchase (at most 64 characters): a retry with the same key "
                "and the same body returns the first order instead of buying again; the same key with another "
                "`quantity` or `email` is refused with 422 `idempotency_key_reused`. A key belongs to one buyer "
                "(the email, normalised) and one product: sent for another `sku` it is that product's own key.",
            ),
            OpenApiParameter(
                "X-Page-Token",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="The product's `page_token` (or `page_token` in the body).",
            ),
            retry_after_header(429, 503),
        ],
        responses={
            202: OrderCreatedSerializer,
            **error_responses(
                InvalidInput(fields={"email": ["Enter a valid email address."]}),
                PageTokenInvalid(),
                TooFast(),
                CaptchaRequired(captcha_url=CAPTCHA_URL),
                CaptchaInvalid(captcha_url=CAPTCHA_URL),
                ProductNotFound(),
                SoldOut(),
                LimitExceeded(),
                UnpaidLimit(max_unpaid=1),
                SaleNotStarted(),
                SaleEnded(),
                RequestTooLarge(),
                UnsupportedMediaType(),
                IdempotencyKeyReused(),
                RateLimited(),
                SalePaused(),
                CouponInvalid(),
                CouponExpired(),
                CouponUsedUp(),
                CouponLimitExceeded(),
                CouponNotApplicable(),
            ),
        },
    )
    def post(self, request):
        # Django's request, whose body the rate limits have parsed already.
        django_request = request._request
        try:
            body = json_body(django_request)
        except ValueError:
            raise InvalidInput(BODY_NOT_JSON, fields={}) from None
        headers = django_request.headers
        buyer = buyer_context(django_request, page_token=headers.get("X-Page-Token") or body.get("page_token"))
        # Over the bot checks' soft threshold a captcha is wanted (see bot_checks).
        solved = captcha_verify(
            sku=body.get("sku"), buyer=buyer, key=body.get("captcha_key"), answer=body.get("captcha_value")
        )
        result = order_checkout(
            sku=body.get("sku"),
            email=body.get("email"),
            quantity=body.get("quantity", 1),
            idempotency_key=headers.get("Idempotency-Key") or body.get("idempotency_key"),
            buyer=replace(buyer, captcha_solved=solved),
            coupon=body.get("coupon"),
            fields=body.get("fields"),
        )
        # A JsonResponse, not DRF's Response: the template-response path
        # (render step, its middleware hooks) cost checkout ~10 % more CPU
        # (docs/benchmarks.md); errors are JsonResponses already.
        return JsonResponse(
            {
                "order_no": result.order_no,
                "status": result.status,
                "access_token": result.access_token,
                **order_urls(result.order_no),
            },
            status=202,
        )


class OrderDetailView(ShopAPIView):
    @extend_schema(
        operation_id="order_detail",
        summary="An order's status, and its keys once delivered",
        description="Poll it as the order page does: send the last answer's `ETag` in `If-None-Match`, and wait "
        "`poll_after_ms` (or `Retry-After` seconds) between polls. An order that has not changed is answered "
        "`304 Not Modified` with no body. The token is checked on every answer: a wrong one is 404, with or "
        "without `If-None-Match`.",
        parameters=[
            ORDER_TOKEN_HEADER,
            OpenApiParameter(
                "token", OpenApiTypes.STR, OpenApiParameter.QUERY, description="Instead of `X-Order-Token`."
            ),
            OpenApiParameter(
                "If-None-Match",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="The `ETag` of the last answer: 304 while the order's status is still the same.",
            ),
            OpenApiParameter(
                "ETag",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200, 304],
                description='Names the order\'s current status (weak: `W/"s1-paid"`); send it back in `If-None-Match`.',
            ),
            OpenApiParameter(
                "Retry-After",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[200, 304],
                description="Seconds until the next poll (`poll_after_ms`, rounded up).",
            ),
        ],
        responses={
            200: OrderSerializer,
            304: OpenApiResponse(description="Not modified: the status is the one `If-None-Match` names. No body."),
            **error_responses(OrderNotFound(), OrderNotPlaced()),
        },
    )
    def get(self, request, order_no: str):
        token = request.headers.get("X-Order-Token") or request.query_params.get("token", "")
        # An unchanged order: 304 from Redis alone (apps.orders.poll).
        check = order_poll_check(order_no=order_no, token=token, if_none_match=request.headers.get("If-None-Match"))
        if check.unchanged is not None:
            return poll_not_modified(check.unchanged)
        read = order_buyer_read(order_no=order_no, token=token)
        if read is None:
            metrics.order_polled(answer="not_found")
        if read is None and order_lost(order_no=order_no, token=token):
            # Only the holder of the order's own token learns this.
            raise OrderNotPlaced()
        if read is None:
            # The same answer for an unknown order and a wrong token: the API
            # does not tell which order numbers exist.
            raise OrderNotFound()
        order_poll_remember(check=check, record=read.record)
        body, etag, after_ms = poll_body(snapshot=read.snapshot, record=read.record)
        return poll_headers(Response(body), etag=etag, after_ms=after_ms)


class CaptchaView(ShopAPIView):
    @extend_schema(
        operation_id="captcha_new",
        summary="A captcha to solve after `captcha_required`",
        description="Show the image to the person and send `captcha_key` and `captcha_value` with the next order. "
        "Good for one try.",
        responses={200: CaptchaSerializer},
    )
    def get(self, request):
        key = CaptchaStore.pick()
        return Response({"captcha_key": key, "image_url": captcha_image_url(key)})


class OrderCancelledSerializer(serializers.Serializer):
    order_no = serializers.CharField()
    status = serializers.ChoiceField(choices=["cancelled"])


class OrderCancelView(ShopAPIView):
    rate_limits = (PAY_IP,)

    @extend_schema(
        operation_id="order_cancel",
        summary="Cancel an unpaid order",
        description="Its stock returns at once and any payment opened at a provider is closed. A payment that "
        "still arrives is taken as one after expiry: delivered if keys remain, otherwise refunded. "
        "Cancelling twice answers the same.",
        request=None,
        parameters=[ORDER_TOKEN_HEADER, retry_after_header(429, 503)],
        responses={
            200: OrderCancelledSerializer,
            **error_responses(OrderNotFound(), OrderNotCancellable(), RateLimited(), OrderPending()),
        },
    )
    def post(self, request, order_no: str):
        token = request.headers.get("X-Order-Token")
        if not token or order_snapshot_get(order_no=order_no, token=token) is None:
            raise OrderNotFound()
        order = order_cancel(order_no=order_no)
        return Response({"order_no": order.order_no, "status": order.status})
