from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import RedisError

from apps.stock.warmup import WarmBlocked, products_to_warm, stock_gate_rebuild, stock_warm


class Command(BaseCommand):
    help = (
        "Set each product's Redis stock to its available keys minus outstanding reservations, "
        "where the stock is unknown (before a sale, after Redis lost its data); publish sale rules."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sku", help="only this product")
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="drop the gate and rebuild it from the database even where the stock is known "
            "(repairs per-buyer counts; checkout of the product pauses for that moment)",
        )

    def handle(self, *args, sku=None, rebuild=False, **options):
        products = list(products_to_warm(sku=sku))
        if sku and not products:
            raise CommandError(f"No product with SKU {sku!r}.")
        try:
            for product in products:
                rebuilt, stock = (stock_gate_rebuild if rebuild else stock_warm)(product=product)
                state = "warmed" if rebuilt else "already warm"
                self.stdout.write(f"{product.sku}: {state}, stock {stock}")
        except (RedisError, WarmBlocked) as exc:
            raise CommandError(f"Stock not warmed: {exc}") from None
        self.stdout.write(self.style.SUCCESS(f"{len(products)} product(s) checked."))
