"""The bodies of the orders API, for its OpenAPI schema.

Checkout does not validate through these: order_checkout validates its input
once, for the storefront form and the API alike, and checkout is the hot path.
A test holds the answers to what these serializers say."""

from rest_framework import serializers

from .models import Order


class OrderCreateRequestSerializer(serializers.Serializer):
    sku = serializers.CharField()
    quantity = serializers.IntegerField(
        min_value=1,
        default=1,
        help_text='A JSON integer (not `"1"` or `1.0`), at most the product\'s `max_per_order`.',
    )
    email = serializers.EmailField(
        help_text="Where the keys are mailed, as typed. The per-buyer limit counts its mailbox: case, a `+tag` and, "
        "for Gmail, dots are ignored."
    )
    page_token = serializers.CharField(
        required=False,
        help_text="The `page_token` of GET /api/v1/products/<sku> (or header `X-Page-Token`), needed when the "
        "product asks for a minimum time on its page.",
    )
    idempotency_key = serializers.CharField(
        required=False,
        help_text="Instead of the `Idempotency-Key` header: a repeat with the same body returns the first order; "
        "with another body, 422 `idempotency_key_reused`.",
    )
    coupon = serializers.CharField(
        required=False,
        max_length=32,
        help_text="A coupon code (not case-sensitive). Its discount is fixed at checkout and the order's `amount` "
        "is after it. Refused with 400 `coupon_invalid`, or 409 `coupon_expired`, `coupon_used_up`, "
        "`coupon_limit_exceeded` (this buyer's uses, counted by mailbox) or `coupon_not_applicable`; "
        "nothing is reserved then.",
    )
    fields = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="The product's checkout fields (`input_fields` of GET /api/v1/products/<sku>), by `key`: e.g. "
        '`{"account_id": "123456"}`. A refused value is 400 `invalid` with `fields` naming `fields.<key>`.',
    )
    captcha_key = serializers.CharField(required=False, help_text="After `captcha_required`: from GET /api/v1/captcha.")
    captcha_value = serializers.CharField(required=False, help_text="After `captcha_required`: the answer.")


class OrderCreatedSerializer(serializers.Serializer):
    order_no = serializers.CharField()
    status = serializers.ChoiceField(choices=[Order.Status.QUEUED])
    access_token = serializers.CharField(help_text="Send as `X-Order-Token` to read or pay this order.")
    status_url = serializers.CharField(help_text="GET /api/v1/orders/<order_no>.")
    pay_url = serializers.CharField(help_text="POST here to pay with the sandbox provider.")
    order_url = serializers.CharField(help_text="The order's page in the storefront.")


class OrderSerializer(serializers.Serializer):
    order_no = serializers.CharField()
    status = serializers.ChoiceField(choices=Order.Status.values)
    sku = serializers.CharField()
    title = serializers.CharField()
    quantity = serializers.IntegerField()
    amount = serializers.DecimalField(
        max_digits=12, decimal_places=2, coerce_to_string=True, help_text="What the buyer pays: after `discount`."
    )
    currency = serializers.CharField()
    coupon = serializers.CharField(allow_null=True, help_text="The coupon code checkout applied, or null.")
    discount = serializers.DecimalField(
        max_digits=12, decimal_places=2, coerce_to_string=True, help_text="What the coupon took off."
    )
    pay_deadline = serializers.DateTimeField(
        allow_null=True, help_text="Until when the order can be paid; null once it is paid or has ended."
    )
    payment_methods = serializers.ListField(
        child=serializers.CharField(),
        help_text="The methods the order can be paid with now (`stripe`, `epay.alipay`, ...); "
        "empty once it cannot be paid. Pay with POST /api/v1/orders/{order_no}/payments.",
    )
    keys = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Only once the order is `delivered`. A reusable-key product's orders all get the same one key; "
        "a manual-delivery product's get none (see `delivered_content`).",
    )
    delivery = serializers.ChoiceField(
        choices=["keys", "reusable_key", "manual"],
        required=False,
        help_text="How the product is delivered: `keys` from the pool, one `reusable_key` shared by every buyer, "
        "or `manual` (the merchant delivers by hand, so a paid order may wait a while).",
    )
    delivered_content = serializers.CharField(
        required=False, help_text="Only once a `manual` order is `delivered`: what the merchant delivered."
    )
    poll_after_ms = serializers.IntegerField(
        help_text="When to ask again, in milliseconds: the status's own pace (about 1-2 s while the order is "
        "being paid or delivered, longer once it waits for a person or has ended), slower as the order ages and "
        "as the shop gets busy. Send the answer's `ETag` back in `If-None-Match`: an unchanged order is "
        "answered 304 (with `Retry-After`) at a fraction of the cost."
    )


class CaptchaSerializer(serializers.Serializer):
    captcha_key = serializers.CharField(help_text="Send back as `captcha_key` with the order.")
    image_url = serializers.CharField(help_text="The image to show to the person.")
