"""Is the read replica fit to serve reads right now? (docs/database-replica.md)

Each process asks the replica at most once every REPLICA_CHECK_SECONDS (one
short-lived connection: `SHOW SLAVE STATUS` and its GTID position; and one to
the primary for its position) and keeps the verdict in memory, so no request
pays a query for it. The replica is used while it answers, both replication
threads run, and it lags at most REPLICA_MAX_LAG_SECONDS; otherwise reads
fall back to the primary until a later check finds it fit again.

Its lag is the larger of two figures. `Seconds_Behind_Master` alone is not
trusted: it reads 0 whenever the SQL thread has applied what the IO thread
received, also when the IO thread receives nothing because the link to the
primary died silently (until slave_net_timeout). So each check also compares
GTID positions: the primary's @@gtid_binlog_pos with the replica's
@@gtid_slave_pos. When the replica lacks a transaction the primary had at an
earlier check, it has lagged at least since that check (_GtidWatch). A replica that cannot be reached is
remembered as such for the check interval, so a dead replica costs one
connect timeout per process per interval, not one per request.

With DATABASE_REPLICA_URL unset (the replica alias is the primary) all of
this is off: `replica_enabled()` is False and nothing is checked."""

import logging
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connections

from apps.core import metrics

logger = logging.getLogger(__name__)

OK, LAGGING, STOPPED, UNREACHABLE = "ok", "lagging", "stopped", "unreachable"


@dataclass(frozen=True)
class ReplicaVerdict:
    """One check's outcome. `lag_seconds` is None when replication is not running."""

    reason: str
    lag_seconds: float | None
    checked_at: float  # time.monotonic()

    @property
    def usable(self) -> bool:
        return self.reason == OK


def replica_enabled() -> bool:
    return settings.REPLICA_ENABLED


class ReplicaHealth:
    """The verdict of this process, refreshed lazily. Thread-safe: while one
    thread checks, the others keep using the previous verdict."""

    def __init__(self):
        self._verdict: ReplicaVerdict | None = None
        self._lock = threading.Lock()
        self._gtid_watch = _GtidWatch()

    def verdict(self) -> ReplicaVerdict:
        current = self._verdict
        if current is not None and time.monotonic() - current.checked_at < settings.REPLICA_CHECK_SECONDS:
            return current
        # The first check of a process waits for its result; later ones do not
        # hold other threads up: they answer with the last verdict meanwhile.
        got = self._lock.acquire(timeout=10) if current is None else self._lock.acquire(blocking=False)
        if not got:
            return current if current is not None else self._record(UNREACHABLE, None)
        try:
            if self._verdict is not current:  # another thread checked while this one waited
                return self._verdict
            return self._check()
        finally:
            self._lock.release()

    def usable(self) -> bool:
        return self.verdict().usable

    def mark_unreachable(self, error: Exception) -> None:
        """A connection to the replica just failed: fall back now, and ask again after the interval."""
        logger.warning("database replica unreachable, reading from the primary: %s", error)
        self._record(UNREACHABLE, None)

    def forget(self) -> None:
        """Drop the verdict (tests; the next call checks again)."""
        self._verdict = None
        self._gtid_watch = _GtidWatch()

    def _check(self) -> ReplicaVerdict:
        try:
            status = _replica_status()
        except Exception as error:  # the driver's errors (refused, timeout, access denied) and DNS failures
            logger.warning("database replica check failed, reading from the primary: %s", error)
            return self._record(UNREACHABLE, None)
        if status is None:
            logger.warning("database replica is not replicating (SHOW SLAVE STATUS is empty); reading from the primary")
            return self._record(STOPPED, None)
        lag = status.get("Seconds_Behind_Master")
        running = status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes"
        if not running or lag is None:
            previous = self._verdict
            if previous is None or previous.reason != STOPPED:
                logger.warning(
                    "database replication stopped (IO %s, SQL %s: %s); reading from the primary",
                    status.get("Slave_IO_Running"),
                    status.get("Slave_SQL_Running"),
                    status.get("Last_SQL_Error") or status.get("Last_IO_Error") or "no error",
                )
            return self._record(STOPPED, None)
        lag = float(lag)
        behind = self._gtid_watch.behind_seconds(status.get("gtid_slave_pos"), now=time.monotonic())
        if behind is not None and behind > lag:
            lag = behind
        return self._record(LAGGING if lag > settings.REPLICA_MAX_LAG_SECONDS else OK, lag)

    def _record(self, reason: str, lag: float | None) -> ReplicaVerdict:
        verdict = ReplicaVerdict(reason=reason, lag_seconds=lag, checked_at=time.monotonic())
        self._verdict = verdict
        metrics.replica_checked(reason=reason, lag_seconds=math.nan if lag is None else lag)
        return verdict


def gtid_position_parse(position: str) -> dict[int, int]:
    """A GTID position ("0-1-15,1-2-7": domain-server-sequence per
    replication domain) as {domain: sequence}."""
    parsed: dict[int, int] = {}
    for gtid in filter(None, (part.strip() for part in (position or "").split(","))):
        domain, _server, sequence = gtid.split("-")
        parsed[int(domain)] = int(sequence)
    return parsed


def gtid_position_behind(replica: dict[int, int], primary: dict[int, int]) -> bool:
    """Whether `replica` lacks a transaction that `primary` has (sequence
    numbers grow within a domain)."""
    return any(replica.get(domain, 0) < sequence for domain, sequence in primary.items())


class _GtidWatch:
    """How long the replica has lacked a transaction the primary had: at each
    check the replica's applied position is compared with the primary's
    position remembered at an earlier check (the target). While the replica
    has not reached the target, it has lagged at least since the check that
    set it; once it has, the primary's current position becomes the next
    target if the replica lacks it. A lower bound, then, late by at most one
    check interval; and one that holds when Seconds_Behind_Master says 0
    because nothing reaches the replica. Used under ReplicaHealth's lock."""

    def __init__(self):
        self.target: dict[int, int] | None = None
        self.since: float | None = None

    def behind_seconds(self, replica_position: str | None, *, now: float) -> float | None:
        """None when a position is unknown (the replica did not report one,
        or the primary cannot be asked: the lag is then Seconds_Behind_Master's)."""
        if replica_position is None:
            return None
        replica = gtid_position_parse(replica_position)
        if self.target is not None and gtid_position_behind(replica, self.target):
            return now - self.since
        try:
            primary = gtid_position_parse(_primary_gtid_position())
        except Exception as error:  # the driver's errors; the primary's own trouble shows elsewhere
            logger.warning("primary GTID position unavailable, replica lag from Seconds_Behind_Master: %s", error)
            return None
        if gtid_position_behind(replica, primary):
            self.target, self.since = primary, now
        else:
            self.target = self.since = None
        return 0.0


def _primary_gtid_position() -> str:
    """@@gtid_binlog_pos on the primary, through a short-lived connection of
    its own with the replica's timeouts."""
    import MySQLdb  # Django's MariaDB driver

    params = connections["default"].get_connection_params()
    params.setdefault("connect_timeout", settings.REPLICA_CONNECT_TIMEOUT_SECONDS)
    params.setdefault("read_timeout", settings.REPLICA_CONNECT_TIMEOUT_SECONDS + 2)
    connection = MySQLdb.connect(**params)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT @@gtid_binlog_pos")
        return cursor.fetchone()[0] or ""
    finally:
        connection.close()


def _replica_status() -> dict | None:
    """SHOW SLAVE STATUS on the replica, with its applied GTID position
    added as "gtid_slave_pos", through a connection of its own (the request's
    connections stay as they are), with the replica's short connect timeout.
    None when the server is not a replica."""
    import MySQLdb  # Django's MariaDB driver

    params = connections["replica"].get_connection_params()
    # A replica that accepts connections but does not answer (frozen, or its
    # disk stuck) must not hold the checking request either.
    params.setdefault("read_timeout", settings.REPLICA_CONNECT_TIMEOUT_SECONDS + 2)
    connection = MySQLdb.connect(**params)
    try:
        cursor = connection.cursor()
        cursor.execute("SHOW SLAVE STATUS")
        row = cursor.fetchone()
        if row is None:
            return None
        status = dict(zip([column[0] for column in cursor.description], row, strict=True))
        cursor.execute("SELECT @@gtid_slave_pos")
        status["gtid_slave_pos"] = cursor.fetchone()[0] or ""
        return status
    finally:
        connection.close()


replica_health = ReplicaHealth()
