"""Catalog reads. Product info is served from the cache so a refresh storm
never reaches MariaDB; a merchant's edit drops the cached copy (signals.py)."""
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from .models import Product


@dataclass(frozen=True)
class ProductInfo:
    """What the storefront and checkout need of a product, cacheable as is."""

    id: int
    sku: str
    title: str
    description: str
    price: Decimal
    currency: str
    is_active: bool
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    per_buyer_limit: int
    max_per_order: int
    category_id: int | None

    @classmethod
    def from_product(cls, product: Product) -> "ProductInfo":
        return cls(
            id=product.id,
            sku=product.sku,
            title=product.title,
            description=product.description,
            price=product.price,
            currency=product.currency,
            is_active=product.is_active,
            sale_starts_at=product.sale_starts_at,
            sale_ends_at=product.sale_ends_at,
            per_buyer_limit=product.per_buyer_limit,
            max_per_order=product.max_per_order,
            category_id=product.category_id,
        )

    def sale_state(self, now: datetime | None = None) -> str:
        """'not_started', 'open' or 'ended', from the sale window."""
        now = now or timezone.now()
        if self.sale_starts_at and now < self.sale_starts_at:
            return "not_started"
        if self.sale_ends_at and now >= self.sale_ends_at:
            return "ended"
        return "open"


def product_cache_key(sku: str) -> str:
    return f"catalog:product:{sku}"


def product_info_get(*, sku: str) -> ProductInfo | None:
    """The active-or-not product with this SKU, from cache; None if unknown."""
    key = product_cache_key(sku)
    info = cache.get(key)
    if info is None:
        product = Product.objects.filter(sku=sku).first()
        if product is None:
            return None
        info = ProductInfo.from_product(product)
        cache.set(key, info, settings.PRODUCT_CACHE_TTL)
    return info
