"""Test helpers for the purchase path: a product with keys, warmed in Redis."""

import itertools
from decimal import Decimal

from apps.cardkeys.crypto import encrypt_secret, fingerprint_secret
from apps.cardkeys.models import CardKey
from apps.catalog.models import Product
from apps.stock.warmup import stock_warm

_counter = itertools.count(1)


def product_with_keys(*, keys: int, warm: bool = True, **fields) -> Product:
    n = next(_counter)
    defaults = {
        "sku": f"SKU-{n}",
        "title": f"Product {n}",
        "price": Decimal("9.90"),
        "currency": "CNY",
        "per_buyer_limit": 5,
        "max_per_order": 5,
        "min_page_seconds": 0,
    }
    defaults.update(fields)
    product = Product.objects.create(**defaults)
    add_keys(product=product, count=keys)
    if warm:
        stock_warm(product=product)
    return product


def add_keys(*, product: Product, count: int, prefix: str = "") -> list[str]:
    start = CardKey.objects.filter(product=product).count()
    secrets_ = [f"{prefix or product.sku}-KEY-{start + i:06d}" for i in range(count)]
    CardKey.objects.bulk_create(
        CardKey(product=product, secret_encrypted=encrypt_secret(s), fingerprint=fingerprint_secret(s))
        for s in secrets_
    )
    return secrets_


def redis_lose_product(product: Product) -> None:
    """What a Redis restart does to one product's gate: every key gone (only
    this environment's keys: the prefix keeps other runs' data safe)."""
    from django.conf import settings

    from apps.stock.redis import stock_redis

    client = stock_redis()
    for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:{{p:{product.id}}}:*"):
        client.delete(key)
