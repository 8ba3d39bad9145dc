from django.core.management.base import BaseCommand

from apps.orders.services.reconcile import reconcile_run


class Command(BaseCommand):
    help = (
        "Re-drive paid but undelivered orders, persist and expire reservations, "
        "and repair Redis stock drift; prints what it found and fixed."
    )

    def handle(self, *args, **options):
        report = reconcile_run()
        for line in report.lines():
            self.stdout.write(line)
        if report.errors:
            self.stderr.write(self.style.ERROR("reconcile finished with errors"))
        elif report.fixed_anything:
            self.stdout.write(self.style.WARNING("reconcile fixed the items above"))
        else:
            self.stdout.write(self.style.SUCCESS("nothing to fix"))
