"""Products and keys for a benchmark run, made through the shop's own commands
(create_product, import_keys, warm_stock) in the bench database."""

import io
import secrets

from django.core.management import call_command


def product_with_keys(*, sku: str, keys: int, per_buyer_limit: int = 5) -> int:
    """Create a product on sale now (no minimum time on page), import `keys`
    distinct keys, warm its stock. Returns the product id."""
    from apps.catalog.models import Product

    quiet = io.StringIO()
    call_command(
        "create_product",
        sku=sku,
        title=f"Benchmark {sku}",
        price="9.90",
        per_buyer_limit=per_buyer_limit,
        max_per_order=1,
        min_page_seconds=0,
        stdout=quiet,
    )
    salt = secrets.token_hex(4)
    lines = b"".join(b"%s-%s-%08d\n" % (sku.encode(), salt.encode(), i) for i in range(keys))
    call_command("import_keys", "-", sku=sku, stdin=io.BytesIO(lines), stdout=quiet)
    call_command("warm_stock", sku=sku, stdout=quiet)
    return Product.objects.using("default").get(sku=sku).id
