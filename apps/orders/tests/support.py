"""Test helpers for the purchase path: a product with keys, warmed in Redis."""

from django.conf import settings

from apps.cardkeys.models import CardKey
from apps.cardkeys.tests.factories import CardKeyFactory
from apps.catalog.models import Product
from apps.catalog.tests.factories import ProductFactory
from apps.stock.redis import stock_redis
from apps.stock.warmup import stock_warm


def product_with_keys(*, keys: int, warm: bool = True, **fields) -> Product:
    """A product on sale now (no category, no minimum time on page) with `keys`
    available keys, its stock warmed in Redis unless warm=False."""
    defaults = {"category": None, "per_buyer_limit": 5, "max_per_order": 5, "min_page_seconds": 0}
    product = ProductFactory(**{**defaults, **fields})
    add_keys(product=product, count=keys)
    if warm:
        stock_warm(product=product)
    return product


def add_keys(*, product: Product, count: int, prefix: str = "") -> list[str]:
    """`count` more available keys of `product`, inserted at once; returns their secrets."""
    start = CardKey.objects.filter(product=product).count()
    secrets_ = [f"{prefix or product.sku}-KEY-{start + i:06d}" for i in range(count)]
    CardKey.objects.bulk_create(CardKeyFactory.build(product=product, batch=None, secret=s) for s in secrets_)
    return secrets_


def redis_lose_product(product: Product) -> None:
    """What a Redis restart does to one product's gate: every key gone (only
    this environment's keys: the prefix keeps other runs' data safe)."""
    client = stock_redis()
    for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:{{p:{product.id}}}:*"):
        client.delete(key)
