from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.core.management.base import ShopCommand
from apps.orders.services.reconcile import reconcile_run


class Command(ShopCommand):
    help = gettext_lazy(
        "Re-drive paid but undelivered orders, persist and expire reservations, "
        "and repair Redis stock drift; prints what it found and fixed."
    )

    def handle(self, *args, **options):
        report = reconcile_run()
        for line in report.lines():
            self.stdout.write(line)
        if report.errors:
            self.stderr.write(self.style.ERROR(_("reconcile finished with errors")))
        elif report.fixed_anything:
            self.stdout.write(self.style.WARNING(_("reconcile fixed the items above")))
        else:
            self.stdout.write(self.style.SUCCESS(_("nothing to fix")))
