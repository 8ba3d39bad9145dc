"""The body of GET /api/v1/products/<sku>, for the OpenAPI schema (a test
holds the answer to it)."""

from rest_framework import serializers

from apps.stock.selectors import IN_STOCK, LOW, SOLD_OUT, UNKNOWN


class ProductSerializer(serializers.Serializer):
    sku = serializers.CharField()
    title = serializers.CharField(help_text="In the request's language (Accept-Language), or the other one if empty.")
    description = serializers.CharField(allow_blank=True)
    image_url = serializers.URLField(allow_null=True, help_text="The product page's image; null without one.")
    price = serializers.DecimalField(max_digits=12, decimal_places=2, coerce_to_string=True)
    currency = serializers.CharField()
    stock_status = serializers.ChoiceField(
        choices=[IN_STOCK, LOW, SOLD_OUT, UNKNOWN], help_text="`unknown` while the sale is paused."
    )
    sale_state = serializers.ChoiceField(choices=["not_started", "open", "ended"])
    sale_starts_at = serializers.DateTimeField(allow_null=True)
    sale_ends_at = serializers.DateTimeField(allow_null=True)
    max_per_order = serializers.IntegerField()
    per_buyer_limit = serializers.IntegerField()
    page_token = serializers.CharField(
        help_text="Send with the order (`page_token` or header `X-Page-Token`); checkout refuses one younger "
        "than the product's minimum time on the page."
    )
