"""Create the MariaDB database named in DATABASE_URL if it does not exist yet."""

import MySQLdb
from django.conf import settings
from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.core.management.base import ShopCommand


class Command(ShopCommand):
    help = gettext_lazy("Create the database of DATABASE_URL (utf8mb4) when it is missing; safe to run again.")
    # The database may not exist yet, so nothing may connect to it before we do.
    requires_system_checks = []

    def handle(self, *args, **options):
        database = settings.DATABASES["default"]
        name = database["NAME"]
        try:
            connection = MySQLdb.connect(
                host=database["HOST"] or "localhost",
                port=int(database["PORT"] or 3306),
                user=database["USER"],
                password=database["PASSWORD"],
                connect_timeout=5,
            )
        except MySQLdb.OperationalError as exc:
            raise CommandError(
                _("Cannot reach MariaDB for DATABASE_URL: %(error)s. Run scripts/ensure_services.sh.") % {"error": exc}
            ) from exc
        try:
            with connection.cursor() as cursor:
                # The name cannot be a query parameter; a backquote in it is doubled.
                quoted = "`" + name.replace("`", "``") + "`"
                cursor.execute(
                    f"CREATE DATABASE IF NOT EXISTS {quoted} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
        finally:
            connection.close()
        self.stdout.write(_("Database %(name)s is ready.") % {"name": name})
