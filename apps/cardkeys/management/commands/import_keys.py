import os
import sys

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.cardkeys.exceptions import ImportRefused
from apps.cardkeys.progress import CountingReader, ProgressPrinter
from apps.cardkeys.services import cardkeys_import
from apps.catalog.models import Product
from apps.core.management.base import ShopCommand


class Command(ShopCommand):
    help = gettext_lazy(
        "Import card keys from a .txt or .csv file (one key a line; - reads stdin) into a product. "
        "Progress goes to stderr: a bar on a terminal, a line every few seconds otherwise."
    )
    # Tests hand in a binary stream instead of the process's stdin.
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("--sku", required=True, help=gettext_lazy("SKU of the product the keys belong to."))
        parser.add_argument(
            "--column",
            help=gettext_lazy("CSV column holding the keys (default: a key/code/卡密 header, else the first column)."),
        )
        parser.add_argument(
            "--no-progress", action="store_true", help=gettext_lazy("Print no progress, only the report.")
        )
        parser.add_argument(
            "file",
            help=gettext_lazy("Path of a .txt or .csv file, or - for stdin (text; CSV when --column is given)."),
        )

    def handle(self, *args, sku, column, file, no_progress=False, **options):
        product = Product.objects.using(DEFAULT_DB_ALIAS).filter(sku=sku).first()
        if product is None:
            raise CommandError(_("Unknown SKU “%(sku)s”: create the product first.") % {"sku": sku})
        try:
            if file == "-":
                report = self._import(product, options.get("stdin") or sys.stdin.buffer, "", column, no_progress)
            else:
                try:
                    source = open(file, "rb")  # noqa: SIM115 - closed by the `with` below, after the error is told
                except OSError as exc:
                    raise CommandError(
                        _("Cannot read %(file)s: %(error)s") % {"file": file, "error": exc.strerror}
                    ) from exc
                with source:
                    report = self._import(product, source, file, column, no_progress)
        except ImportRefused as exc:
            raise CommandError(_("Import refused: %(reason)s") % {"reason": exc.detail}) from exc
        for line in report.details():
            self.stdout.write(line)
        if report.batch_id is None and report.invalid:
            # Every line refused (or a duplicate): the exit status says nothing was stored.
            raise CommandError(_("No line held a new key; no batch was stored."))
        if report.batch_id is None:
            self.stdout.write(_("No line held a new key; no batch was stored."))

    def _import(self, product, source, file_name, column, no_progress):
        if no_progress:
            return cardkeys_import(product=product, source=source, file_name=file_name, column=column)
        counted = CountingReader(source)
        printer = ProgressPrinter(out=self.stderr, position=lambda: counted.position, bytes_total=_size(source))
        try:
            return cardkeys_import(
                product=product, source=counted, file_name=file_name, column=column, progress=printer
            )
        finally:
            printer.finish()


def _size(source) -> int | None:
    """The file's size in bytes; None for a pipe or a stream without one."""
    try:
        info = os.fstat(source.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return info.st_size if info.st_size > 0 else None
