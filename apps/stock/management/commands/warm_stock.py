from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from redis.exceptions import RedisError

from apps.core.management.base import ShopCommand
from apps.stock.warmup import WarmBlocked, products_to_warm, stock_gate_rebuild, stock_warm


class Command(ShopCommand):
    help = gettext_lazy(
        "Set each product's Redis stock to its available keys minus outstanding reservations, "
        "where the stock is unknown (before a sale, after Redis lost its data); publish sale rules."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sku", help=gettext_lazy("only this product"))
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help=gettext_lazy(
                "drop the gate and rebuild it from the database even where the stock is known "
                "(repairs per-buyer counts; checkout of the product pauses for that moment)"
            ),
        )

    def handle(self, *args, sku=None, rebuild=False, **options):
        products = list(products_to_warm(sku=sku))
        if sku and not products:
            raise CommandError(_("No product with SKU %(sku)r.") % {"sku": sku})
        try:
            for product in products:
                rebuilt, stock = (stock_gate_rebuild if rebuild else stock_warm)(product=product)
                message = (
                    _("%(sku)s: warmed, stock %(stock)s") if rebuilt else _("%(sku)s: already warm, stock %(stock)s")
                )
                self.stdout.write(message % {"sku": product.sku, "stock": stock})
        except (RedisError, WarmBlocked) as exc:
            raise CommandError(_("Stock not warmed: %(error)s") % {"error": exc}) from None
        self.stdout.write(
            self.style.SUCCESS(
                ngettext("%(count)d product checked.", "%(count)d products checked.", len(products))
                % {"count": len(products)}
            )
        )
