import sys
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.catalog.models import Category
from apps.catalog.services import product_create
from apps.core.errors import InvalidInput
from apps.core.management.base import ShopCommand
from cardshop.db_router import primary_reads


def _iso_time(value: str) -> datetime:
    """An ISO 8601 time; without an offset it is read in settings.TIME_ZONE."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            _("Not an ISO 8601 time: %(value)r (example: 2026-12-01T20:00:00+08:00).") % {"value": value}
        ) from None
    return moment if moment.tzinfo else timezone.make_aware(moment)


def _price(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise CommandError(_("Not a price: %(value)r (example: 9.90).") % {"value": value}) from None


class Command(ShopCommand):
    help = gettext_lazy("Create a product. Bad input is refused with the reason and nothing is written.")

    def add_arguments(self, parser):
        parser.add_argument("--sku", required=True, help=gettext_lazy("The product's SKU (unique)"))
        parser.add_argument(
            "--title", required=True, help=gettext_lazy("The Chinese title (the shop's default language)")
        )
        parser.add_argument(
            "--title-en", default="", help=gettext_lazy("The English title; empty: English pages show --title")
        )
        parser.add_argument("--price", required=True, help=gettext_lazy("Decimal, e.g. 9.90"))
        parser.add_argument("--currency", help=gettext_lazy("Three-letter code; default settings.DEFAULT_CURRENCY"))
        parser.add_argument("--description", default="", help=gettext_lazy("The Chinese description"))
        parser.add_argument(
            "--description-en", default="", help=gettext_lazy("The English description; empty: --description")
        )
        parser.add_argument("--category", metavar="SLUG", help=gettext_lazy("Slug of an existing category"))
        parser.add_argument("--per-buyer-limit", type=int, default=5, help=gettext_lazy("Keys one buyer may buy"))
        parser.add_argument("--max-per-order", type=int, default=5, help=gettext_lazy("Keys one order may hold"))
        parser.add_argument(
            "--starts-at", metavar="ISO", help=gettext_lazy("Sale start, ISO 8601 (default: on sale now)")
        )
        parser.add_argument("--ends-at", metavar="ISO", help=gettext_lazy("Sale end, ISO 8601 (default: no end)"))
        parser.add_argument(
            "--min-page-seconds",
            type=int,
            default=2,
            help=gettext_lazy("Seconds the product page must be open before checkout accepts a purchase"),
        )
        parser.add_argument(
            "--delivery",
            choices=["keys", "reusable_key", "manual"],
            default="keys",
            help="keys: one key per piece from the uploaded pool (import_keys); reusable_key: every buyer gets "
            "the same key (--reusable-key); manual: the merchant delivers by hand in the admin",
        )
        parser.add_argument("--stock", type=int, default=0, help="Units on sale, for --delivery reusable_key/manual")
        parser.add_argument(
            "--reusable-key", default="", help="The key every buyer gets (stored encrypted); or - to read it from stdin"
        )

    def stdin_or(self, value: str) -> str:
        # "-" keeps the key out of the shell history and the process list.
        return sys.stdin.readline().strip() if value == "-" else value

    def handle(self, *args, **options):
        category = None
        if options["category"]:
            with primary_reads():
                category = Category.objects.filter(slug=options["category"]).first()
            if category is None:
                raise CommandError(_("No category with slug %(slug)r.") % {"slug": options["category"]})
        try:
            product = product_create(
                sku=options["sku"],
                title=options["title"],
                title_en=options["title_en"],
                price=_price(options["price"]),
                currency=options["currency"],
                description=options["description"],
                description_en=options["description_en"],
                category=category,
                per_buyer_limit=options["per_buyer_limit"],
                max_per_order=options["max_per_order"],
                sale_starts_at=_iso_time(options["starts_at"]) if options["starts_at"] else None,
                sale_ends_at=_iso_time(options["ends_at"]) if options["ends_at"] else None,
                min_page_seconds=options["min_page_seconds"],
                delivery_kind=options["delivery"],
                stock_quantity=options["stock"],
                reusable_key=self.stdin_or(options["reusable_key"]),
            )
        except InvalidInput as exc:
            reasons = "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in exc.extra["fields"].items())
            raise CommandError(_("Product not created. %(reasons)s") % {"reasons": reasons}) from exc
        self.stdout.write(
            self.style.SUCCESS(
                _("Created product %(sku)s (id %(id)d): %(title)s")
                % {"sku": product.sku, "id": product.id, "title": product.title}
            )
        )
