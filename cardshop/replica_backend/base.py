"""The `replica` alias's database backend: Django's MariaDB backend that,
when the replica cannot be reached or stops answering, reads from the
primary instead.

The router stops choosing the replica once a check finds it unfit
(apps.core.replica), but a request routed there just before a crash, a
freeze or a partition would otherwise fail with a 500, or wait as long as the
kernel keeps a silent TCP connection. Here every wait on the replica is
bounded: connecting by REPLICA_CONNECT_TIMEOUT_SECONDS, reading (a query, or
the health check's ping of a persistent connection) by
REPLICA_QUERY_TIMEOUT_SECONDS (the alias's connect/read/write timeouts,
cardshop/settings/base.py). When a connection attempt fails, or a read loses
its connection (2006 gone away, 2013 lost), the failure is remembered for the
check interval and the read runs on the primary. A connection opened that way
is closed at the end of a request once the replica is fit again, so replica
reads return to the replica.

This is the one place every replica read passes through (the router's
catalog reads and the order selectors' `using("replica")` alike)."""

from django.db import connections
from django.db.backends.mysql import base as mysql

from apps.core import metrics
from apps.core.replica import replica_enabled, replica_health

# The client's "server has gone away" and "lost connection during query":
# the replica died, froze past the read timeout, or the network dropped it.
# A read that failed so is safe to run again on the primary.
CONNECTION_LOST_CODES = frozenset({2006, 2013})


class ReplicaCursorWrapper(mysql.CursorWrapper):
    """A replica cursor whose read, when the replica connection is lost
    under it, runs again on the primary (the rows are then fetched from
    there)."""

    def __init__(self, cursor, db: "DatabaseWrapper"):
        super().__init__(cursor)
        self.db = db

    def execute(self, query, args=None):
        try:
            return super().execute(query, args)
        except mysql.Database.OperationalError as error:
            if not replica_enabled() or error.args[0] not in CONNECTION_LOST_CODES:
                raise
            self.db.replica_lost(error)
        primary = connections["default"]
        primary.ensure_connection()
        self.cursor = primary.connection.cursor()
        return super().execute(query, args)


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
            metrics.replica_failed_over(stage="connect")
        self.serving_from_primary = True
        return super().get_new_connection(connections["default"].get_connection_params())

    def create_cursor(self, name=None):
        return ReplicaCursorWrapper(self.connection.cursor(), self)

    def replica_lost(self, error: Exception) -> None:
        """A read lost its replica connection: the replica is unfit until the
        next check, and the dead connection goes now (a ping of it at the end
        of the request would wait the read timeout again)."""
        replica_health.mark_unreachable(error)
        metrics.replica_failed_over(stage="query")
        if not self.in_atomic_block:
            self.close()

    def close_if_unusable_or_obsolete(self):
        super().close_if_unusable_or_obsolete()
        if self.connection is not None and self.serving_from_primary and replica_health.usable():
            self.close()
