"""Products not sold from the key pool (a reusable key, manual delivery), for
the tests of apps/orders/tests/test_delivery_kinds*.py."""

from apps.catalog.models import Product
from apps.catalog.services import reusable_key_encrypt
from apps.catalog.tests.factories import ProductFactory
from apps.stock.warmup import stock_warm

SHARED_KEY = "SHARED-DL-CODE-K3&<i>"


def product_reusable(*, stock: int, key: str = SHARED_KEY, warm: bool = True, **fields) -> Product:
    """A reusable-key product on sale now with `stock` units, warmed unless warm=False."""
    return _product(
        delivery_kind=Product.Delivery.REUSABLE_KEY,
        stock_quantity=stock,
        reusable_key_encrypted=reusable_key_encrypt(secret=key),
        warm=warm,
        **fields,
    )


def product_manual(*, stock: int, warm: bool = True, **fields) -> Product:
    """A manual-delivery product on sale now with `stock` units, warmed unless warm=False."""
    return _product(delivery_kind=Product.Delivery.MANUAL, stock_quantity=stock, warm=warm, **fields)


def _product(*, warm: bool, **fields) -> Product:
    defaults = {"category": None, "per_buyer_limit": 5, "max_per_order": 5, "min_page_seconds": 0}
    product = ProductFactory(**{**defaults, **fields})
    if warm:
        stock_warm(product=product)
    return product


def stock_number(product: Product) -> int:
    return Product.objects.values_list("stock_quantity", flat=True).get(id=product.id)
