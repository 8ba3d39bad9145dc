"""The figures docs/database-replica.md quotes, measured on a private MariaDB
pair (testing/mariadb_pair.py; the machine's MariaDB is not touched):

    python -m bench.replica_figures

- how long the pair takes to start;
- one lag check as a web process makes it: a connection to the replica as the
  application account, SHOW SLAVE STATUS and @@gtid_slave_pos, closed; and
  one to the primary for @@gtid_binlog_pos;
- how soon a row committed on the primary is applied on the replica;
- how soon a connection to a killed replica is refused, and how long one to a
  frozen (SIGSTOPped) replica waits: the connect timeout.

Prints medians (and the slowest) in milliseconds. No Django."""

import os
import signal
import statistics
import time

import MySQLdb

from testing.mariadb_pair import APP_PASSWORD, APP_USER, MariaDBPair

ROUNDS = 50


def _ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms, slowest {max(samples) * 1000:.1f} ms (n={len(samples)})"


def _app_connect(port: int, *, connect_timeout: int = 1):
    return MySQLdb.connect(
        host="127.0.0.1", port=port, user=APP_USER, password=APP_PASSWORD, connect_timeout=connect_timeout
    )


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    started = time.perf_counter()
    with MariaDBPair(database="figures") as pair:
        print(f"pair started (both servers, replication caught up): {time.perf_counter() - started:.1f} s")

        def replica_check():
            connection = _app_connect(pair.replica.port)
            cursor = connection.cursor()
            cursor.execute("SHOW SLAVE STATUS")
            cursor.fetchone()
            cursor.execute("SELECT @@gtid_slave_pos")
            cursor.fetchone()
            connection.close()

        def primary_position():
            connection = _app_connect(pair.primary.port)
            cursor = connection.cursor()
            cursor.execute("SELECT @@gtid_binlog_pos")
            cursor.fetchone()
            connection.close()

        print(
            "lag check on the replica (connect, SHOW SLAVE STATUS, @@gtid_slave_pos, close):",
            _ms([_timed(replica_check) for _ in range(ROUNDS)]),
        )
        print(
            "GTID position of the primary (connect, @@gtid_binlog_pos, close):",
            _ms([_timed(primary_position) for _ in range(ROUNDS)]),
        )

        primary = pair.primary.connect()
        replica = pair.replica.connect()
        primary.cursor().execute("CREATE TABLE figures.t (id INT PRIMARY KEY)")
        pair.wait_caught_up(timeout=30)
        applied = []
        for number in range(ROUNDS):
            cursor = primary.cursor()
            cursor.execute("INSERT INTO figures.t VALUES (%s)", (number,))  # autocommit: committed on return
            committed = time.perf_counter()
            cursor.execute("SELECT @@gtid_binlog_pos")
            position = cursor.fetchone()[0]
            replica_cursor = replica.cursor()
            while True:
                replica_cursor.execute("SELECT @@gtid_slave_pos")
                if replica_cursor.fetchone()[0] == position:
                    break
            applied.append(time.perf_counter() - committed)
        print("a committed row applied on the replica (polled by GTID position):", _ms(applied))
        replica.close()
        primary.close()

        def refused_frozen():
            try:
                _app_connect(pair.replica.port, connect_timeout=1)
            except MySQLdb.OperationalError:
                return
            raise AssertionError("a frozen replica accepted a connection")

        os.kill(pair.replica.pid, signal.SIGSTOP)
        try:
            frozen = []
            for _ in range(3):
                frozen.append(_timed(refused_frozen))
        finally:
            os.kill(pair.replica.pid, signal.SIGCONT)

        def refused():
            try:
                _app_connect(pair.replica.port)
            except MySQLdb.OperationalError:
                return
            raise AssertionError("a killed replica accepted a connection")

        pair.replica.kill()
        print("connection to a killed replica refused:", _ms([_timed(refused) for _ in range(20)]))
        print("connection to a frozen (SIGSTOP) replica given up (connect_timeout=1):", _ms(frozen))


if __name__ == "__main__":
    main()
