"""GET /api/v1/products/<sku>: a product as a script sees it."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from apps.core.api import ShopAPIView
from apps.core.openapi import error_responses
from apps.orders.buyer_context import device_cookie_ensure
from apps.orders.exceptions import ProductNotFound
from apps.stock.selectors import stock_remaining, stock_status

from .page_tokens import page_token_new
from .selectors import product_info_get
from .serializers import ProductSerializer


def _iso(moment):
    return moment.isoformat() if moment else None


class ProductDetailView(ShopAPIView):
    @extend_schema(
        operation_id="product_detail",
        summary="A product: price, stock status, sale window and a page token",
        description="Also sets the signed device cookie that the per-buyer limits count by, if the client has none.",
        responses={200: ProductSerializer, **error_responses(ProductNotFound())},
    )
    def get(self, request, sku: str):
        product = product_info_get(sku=sku)
        if product is None or not product.is_active:
            raise ProductNotFound()
        remaining = stock_remaining(product_id=product.id)
        response = Response(
            {
                "sku": product.sku,
                "title": product.title,
                "description": product.description,
                "image_url": request.build_absolute_uri(product.image_page_url) if product.image_page_url else None,
                "price": str(product.price),
                "currency": product.currency,
                "stock_status": stock_status(remaining),
                "sale_state": product.sale_state(),
                "sale_starts_at": _iso(product.sale_starts_at),
                "sale_ends_at": _iso(product.sale_ends_at),
                "max_per_order": product.max_per_order,
                "per_buyer_limit": product.per_buyer_limit,
                "price_tiers": [
                    {"min_quantity": min_quantity, "unit_price": str(price)}
                    for min_quantity, price in product.price_tiers
                ],
                "input_fields": [
                    {
                        "key": field.key,
                        "label": field.label,
                        "type": field.kind,
                        "required": field.required,
                        "choices": list(field.choices),
                        "pattern": field.pattern,
                        "max_length": field.max_length,
                    }
                    for field in product.input_fields
                ],
                "page_token": page_token_new(sku=product.sku),
            }
        )
        device_cookie_ensure(request._request, response)
        return response
