import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS
from django.utils.translation import gettext as _

from apps.cardkeys.exceptions import ImportRefused
from apps.cardkeys.services import cardkeys_import
from apps.catalog.models import Product


class Command(BaseCommand):
    help = "Import card keys from a .txt or .csv file (one key a line; - reads stdin) into a product."
    # Tests hand in a binary stream instead of the process's stdin.
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("--sku", required=True, help="SKU of the product the keys belong to.")
        parser.add_argument(
            "--column", help="CSV column holding the keys (default: a key/code/卡密 header, else the first column)."
        )
        parser.add_argument(
            "file", help="Path of a .txt or .csv file, or - for stdin (text; CSV when --column is given)."
        )

    def handle(self, *args, sku, column, file, **options):
        product = Product.objects.using(DEFAULT_DB_ALIAS).filter(sku=sku).first()
        if product is None:
            raise CommandError(_("Unknown SKU “%(sku)s”: create the product first.") % {"sku": sku})
        try:
            if file == "-":
                source = options.get("stdin") or sys.stdin.buffer
                report = cardkeys_import(product=product, source=source, column=column)
            else:
                try:
                    source = open(file, "rb")  # noqa: SIM115 - closed by the `with` below, after the error is told
                except OSError as exc:
                    raise CommandError(
                        _("Cannot read %(file)s: %(error)s") % {"file": file, "error": exc.strerror}
                    ) from exc
                with source:
                    report = cardkeys_import(product=product, source=source, file_name=file, column=column)
        except ImportRefused as exc:
            raise CommandError(_("Import refused: %(reason)s") % {"reason": exc.detail}) from exc
        for line in report.details():
            self.stdout.write(line)
