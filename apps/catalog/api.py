"""GET /api/v1/products/<sku>: a product as a script sees it."""

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from apps.orders.buyer_context import device_cookie_ensure
from apps.stock.selectors import stock_remaining, stock_status

from .page_tokens import page_token_new
from .selectors import product_info_get


def _iso(moment):
    return moment.isoformat() if moment else None


@require_GET
def product_detail(request, sku: str):
    product = product_info_get(sku=sku)
    if product is None or not product.is_active:
        return JsonResponse({"error": "not_found", "detail": "No such product."}, status=404)
    remaining = stock_remaining(product_id=product.id)
    response = JsonResponse(
        {
            "sku": product.sku,
            "title": product.title,
            "description": product.description,
            "price": str(product.price),
            "currency": product.currency,
            "stock_status": stock_status(remaining),
            "sale_state": product.sale_state(),
            "sale_starts_at": _iso(product.sale_starts_at),
            "sale_ends_at": _iso(product.sale_ends_at),
            "max_per_order": product.max_per_order,
            "per_buyer_limit": product.per_buyer_limit,
            "page_token": page_token_new(sku=product.sku),
        }
    )
    device_cookie_ensure(request, response)
    return response
