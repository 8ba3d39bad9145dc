"""The `replica` alias's database backend: Django's MariaDB backend that,
when the replica cannot be reached, connects to the primary instead.

The router stops choosing the replica once a check finds it unfit
(apps.core.replica), but a request routed there just before a crash would
otherwise fail with a 500. Here its connection attempt fails fast (the
replica's short connect timeout), the failure is remembered for the check
interval, and the query runs on the primary. A connection opened that way is
closed at the end of a request once the replica is fit again, so replica
reads return to the replica."""

from django.db import connections
from django.db.backends.mysql import base as mysql

from apps.core.replica import replica_enabled, replica_health


class DatabaseWrapper(mysql.DatabaseWrapper):
    serving_from_primary = False

    def get_new_connection(self, conn_params):
        self.serving_from_primary = False
        if not replica_enabled():
            return super().get_new_connection(conn_params)
        try:
            return super().get_new_connection(conn_params)
        except mysql.Database.OperationalError as error:
            replica_health.mark_unreachable(error)
        self.serving_from_primary = True
        return super().get_new_connection(connections["default"].get_connection_params())

    def close_if_unusable_or_obsolete(self):
        super().close_if_unusable_or_obsolete()
        if self.connection is not None and self.serving_from_primary and replica_health.usable():
            self.close()
