"""POST /api/v1/coupons/check: what an order would cost now (tier price and
coupon), for the product page's live total and for scripts."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.catalog.selectors import product_info_get
from apps.catalog.templatetags.shop import money
from apps.core.api import BODY_NOT_JSON, ShopAPIView
from apps.core.errors import InvalidInput
from apps.core.openapi import error_responses, retry_after_header
from apps.core.ratelimits import PRICE_IP
from apps.core.request_body import json_body
from apps.orders.exceptions import ProductNotFound, RateLimited

from .exceptions import CouponExpired, CouponInvalid, CouponLimitExceeded, CouponNotApplicable, CouponUsedUp
from .selectors import price_preview


class PriceCheckRequestSerializer(serializers.Serializer):
    sku = serializers.CharField()
    quantity = serializers.IntegerField(min_value=1, default=1)
    coupon = serializers.CharField(required=False, allow_blank=True, help_text="A coupon code (not case-sensitive).")
    email = serializers.EmailField(
        required=False, help_text="If given, the coupon's uses per buyer are checked for this mailbox too."
    )


class PriceCheckSerializer(serializers.Serializer):
    sku = serializers.CharField()
    quantity = serializers.IntegerField()
    currency = serializers.CharField()
    unit_price = serializers.DecimalField(
        max_digits=12, decimal_places=2, coerce_to_string=True, help_text="After wholesale tiers."
    )
    subtotal = serializers.DecimalField(max_digits=12, decimal_places=2, coerce_to_string=True)
    coupon = serializers.CharField(allow_null=True, help_text="The coupon applied (its code), or null.")
    discount = serializers.DecimalField(max_digits=12, decimal_places=2, coerce_to_string=True)
    amount = serializers.DecimalField(
        max_digits=12, decimal_places=2, coerce_to_string=True, help_text="What the buyer would pay."
    )
    display = serializers.DictField(
        child=serializers.CharField(), help_text="unit_price, subtotal, discount and amount with the currency sign."
    )


class PriceCheckView(ShopAPIView):
    rate_limits = (PRICE_IP,)

    @extend_schema(
        operation_id="coupon_check",
        summary="Price an order before checkout: tier price and coupon",
        description="What an order of `quantity` would cost now: the wholesale tier it reaches and the coupon's "
        "discount, if the coupon may be used. A preview: checkout decides again (uses are taken only then), "
        "and the price it fixes is the order's.",
        request=PriceCheckRequestSerializer,
        parameters=[retry_after_header(429)],
        responses={
            200: PriceCheckSerializer,
            **error_responses(
                InvalidInput(fields={"quantity": ["Quantity must be a whole number of at least 1."]}),
                CouponInvalid(),
                ProductNotFound(),
                CouponExpired(),
                CouponUsedUp(),
                CouponLimitExceeded(),
                CouponNotApplicable(),
                RateLimited(),
            ),
        },
    )
    def post(self, request):
        try:
            body = json_body(request._request)
        except ValueError:
            raise InvalidInput(BODY_NOT_JSON, fields={}) from None
        sku, quantity = body.get("sku"), body.get("quantity", 1)
        product = product_info_get(sku=sku) if isinstance(sku, str) and sku else None
        if product is None or not product.is_active:
            raise ProductNotFound()
        if type(quantity) is not int or not 1 <= quantity <= product.max_per_order:
            raise InvalidInput(fields={"quantity": [str(_quantity_message(product.max_per_order))]})
        email = body.get("email")
        preview = price_preview(
            product=product,
            quantity=quantity,
            code=body.get("coupon") or None,
            email=email if isinstance(email, str) else None,
        )
        price, currency = preview.price, product.currency
        return Response(
            {
                "sku": product.sku,
                "quantity": quantity,
                "currency": currency,
                "unit_price": str(preview.unit_price),
                "subtotal": str(price.subtotal),
                "coupon": preview.coupon.code if preview.coupon else None,
                "discount": str(price.discount),
                "amount": str(price.amount),
                "display": {
                    "unit_price": money(preview.unit_price, currency),
                    "subtotal": money(price.subtotal, currency),
                    "discount": money(price.discount, currency),
                    "amount": money(price.amount, currency),
                },
            }
        )


def _quantity_message(max_per_order: int) -> str:
    return _("Quantity must be a whole number from 1 to %(n)d.") % {"n": max_per_order}
