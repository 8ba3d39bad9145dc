from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.cardkeys.services import cardkeys_rotate_encryption
from apps.core.management.base import ShopCommand


class Command(ShopCommand):
    help = gettext_lazy(
        "Re-encrypt every stored card key (and the reusable keys and manual deliveries) under the first key "
        "of CARDKEY_ENCRYPTION_KEYS. "
        "Put the new key first, keep the old ones after it, run this, then drop the old ones."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--chunk-size", type=int, default=1000, help=gettext_lazy("Keys re-encrypted per transaction.")
        )

    def handle(self, *args, chunk_size, **options):
        if chunk_size < 1:
            raise CommandError(_("--chunk-size must be at least 1."))
        report = cardkeys_rotate_encryption(chunk_size=chunk_size)
        self.stdout.write(
            _("%(rotated)d keys re-encrypted, %(current)d already under the current key.")
            % {"rotated": report.rotated, "current": report.already_current}
        )
        problems = []
        if report.unreadable_ids:
            problems.append(
                _("%(count)d keys could not be decrypted with any configured key (ids: %(ids)s).")
                % {"count": len(report.unreadable_ids), "ids": ", ".join(map(str, report.unreadable_ids[:50]))}
            )
        if report.unreadable_other:
            problems.append(
                _("%(count)d other secrets could not be decrypted with any configured key (%(rows)s).")
                % {"count": len(report.unreadable_other), "rows": ", ".join(report.unreadable_other[:50])}
            )
        if problems:
            raise CommandError(" ".join(problems))
