"""POST /api/v1/payments/sandbox/<order_no>/pay: the sandbox provider pays an
order, for scripts and load tests (the README's API table; /api/v1/schema)."""

from django.http import HttpRequest
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.core.api import BODY_NOT_JSON, ShopAPIView
from apps.core.client_ip import client_ip
from apps.core.errors import InvalidInput, RateLimited, RequestTooLarge
from apps.core.openapi import ORDER_TOKEN_HEADER, error_responses, retry_after_header
from apps.core.ratelimits import PAY_IP
from apps.core.request_body import json_body
from apps.orders.exceptions import OrderNotFound
from apps.orders.selectors import order_snapshot_get

from .exceptions import OrderNotPayable, PaymentMethodUnavailable, PaymentUnavailable, UnknownProvider
from .services import PAYABLE_BY_METHOD, payment_start, sandbox_payment_make


class SandboxPayRequestSerializer(serializers.Serializer):
    token = serializers.CharField(required=False, help_text="Instead of the `X-Order-Token` header.")


class SandboxPaymentSentSerializer(serializers.Serializer):
    order_no = serializers.CharField()
    status = serializers.CharField(help_text="The order's status when the payment was sent.")
    payment = serializers.ChoiceField(choices=["sent"])


class SandboxPayView(ShopAPIView):
    rate_limits = (PAY_IP,)

    @extend_schema(
        operation_id="sandbox_pay",
        summary="Pay an order in full with the sandbox provider",
        description="The sandbox sends its signed notification to the webhook, as a real provider would; "
        "the order becomes `paid`, then `delivered`. Only where the sandbox provider is enabled.",
        request=SandboxPayRequestSerializer,
        parameters=[ORDER_TOKEN_HEADER, retry_after_header(429, 503)],
        responses={
            202: SandboxPaymentSentSerializer,
            **error_responses(
                InvalidInput(BODY_NOT_JSON, fields={}),
                OrderNotFound(),
                UnknownProvider(),
                OrderNotPayable(),
                RequestTooLarge(),
                RateLimited(),
                PaymentUnavailable(),
            ),
        },
    )
    def post(self, request, order_no: str):
        token = request.headers.get("X-Order-Token") or _body_token(request._request)
        snapshot = order_snapshot_get(order_no=order_no, token=token) if token else None
        if snapshot is None:
            raise OrderNotFound()
        sandbox_payment_make(snapshot=snapshot)
        return Response({"order_no": order_no, "status": snapshot["status"], "payment": "sent"}, status=202)


def _body_token(request: HttpRequest) -> str | None:
    """The token from a JSON body, if there is one. A body of another type
    counts as no token (a 404); a JSON body that is not a JSON object (or
    nests too deep) is refused as at checkout (400 invalid)."""
    if request.content_type != "application/json":
        return None
    try:
        token = json_body(request).get("token")
    except ValueError:
        raise InvalidInput(BODY_NOT_JSON, fields={}) from None
    return token if isinstance(token, str) else None


class PaymentCreateRequestSerializer(serializers.Serializer):
    method = serializers.CharField(help_text="One of the order's `payment_methods`, e.g. `epay.alipay` or `stripe`.")


class PaymentCreatedSerializer(serializers.Serializer):
    method = serializers.CharField()
    pay_url = serializers.CharField(allow_null=True, help_text="Send the buyer there to pay.")
    qr_code = serializers.CharField(allow_null=True, help_text="Or show this text as a QR code to scan.")


class OrderPaymentCreateView(ShopAPIView):
    rate_limits = (PAY_IP,)

    @extend_schema(
        operation_id="order_payment_create",
        summary="Start paying an order with a method",
        description="Opens a payment at the method's provider, which expires with the order's `pay_deadline`. "
        "The order becomes `paid` when the provider notifies the shop, then `delivered`.",
        request=PaymentCreateRequestSerializer,
        parameters=[ORDER_TOKEN_HEADER, retry_after_header(429, 503)],
        responses={
            201: PaymentCreatedSerializer,
            **error_responses(
                PaymentMethodUnavailable(),
                OrderNotFound(),
                OrderNotPayable(),
                RateLimited(),
                PaymentUnavailable(),
            ),
        },
    )
    def post(self, request, order_no: str):
        django_request = request._request
        token = request.headers.get("X-Order-Token")
        snapshot = order_snapshot_get(order_no=order_no, token=token) if token else None
        if snapshot is None:
            raise OrderNotFound()
        try:
            method = json_body(django_request).get("method")
        except ValueError:
            method = None
        if snapshot["status"] not in PAYABLE_BY_METHOD:
            raise OrderNotPayable()
        if not isinstance(method, str) or method not in snapshot["payment_methods"]:
            raise PaymentMethodUnavailable()
        start = payment_start(
            snapshot=snapshot,
            method=method,
            token=token,
            device=buyer_device(django_request),
            client_ip=client_ip(django_request),
        )
        return Response({"method": method, "pay_url": start.pay_url or None, "qr_code": start.qr_code or None}, 201)


def buyer_device(request: HttpRequest) -> str:
    """ "mobile" or "pc", from the User-Agent: a provider shows a phone its
    mobile flow (Alipay WAP, WeChat H5) and a computer a page or a QR code."""
    agent = request.headers.get("User-Agent", "")
    return "mobile" if any(mark in agent for mark in ("Mobi", "Android", "iPhone")) else "pc"
