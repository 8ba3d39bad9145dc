"""testing/mariadb_pair.py: the private MariaDB primary and replica that the
replica tests and `make replica` start. It replicates with GTID, its replica
refuses the application's writes, a server that cannot start fails in
bounded time with its log, and nothing is left behind."""

import json
import os
import subprocess
import sys
import time

import MySQLdb
import pytest

from testing.mariadb_pair import APP_PASSWORD, APP_USER, MariaDBPair, MariaDBServer
from testing.processes import ROOT, ProcessFailed, port_listens


def _app_connection(server: MariaDBServer):
    connection = MySQLdb.connect(
        host="127.0.0.1", port=server.port, user=APP_USER, password=APP_PASSWORD, database="scratch"
    )
    connection.autocommit(True)
    return connection


def test_the_pair_replicates_by_gtid_its_replica_is_read_only_and_it_leaves_nothing_behind():
    with MariaDBPair(database="scratch") as pair:
        primary = _app_connection(pair.primary)
        primary.cursor().execute("CREATE TABLE t (id INT PRIMARY KEY)")
        primary.cursor().execute("INSERT INTO t VALUES (1), (2)")
        pair.wait_caught_up(timeout=10)
        status = pair.replica_status()
        assert status["Using_Gtid"] == "Slave_Pos"
        assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
        assert pair.replica.sql("SELECT COUNT(*) FROM scratch.t") == [(2,)]
        assert pair.replica.sql("SELECT @@read_only, @@server_id") == [(1, 2)]

        replica = _app_connection(pair.replica)
        with pytest.raises(MySQLdb.OperationalError, match="read-only"):
            replica.cursor().execute("INSERT INTO t VALUES (3)")
        cursor = replica.cursor()
        cursor.execute("SHOW SLAVE STATUS")  # the lag check's query, as the application account
        assert cursor.fetchone() is not None

        directory, ports = pair.dir, (pair.primary.port, pair.replica.port)
        pids = (pair.primary.pid, pair.replica.pid)
    assert not directory.exists()
    assert not any(port_listens(port) for port in ports)
    assert not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in pids)


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_server_that_cannot_start_fails_in_bounded_time_with_its_log(tmp_path):
    server = MariaDBServer(dir=tmp_path / "bad", server_id=9, name="bad-mariadb", extra_args=("--no-such-option=1",))
    started = time.monotonic()
    with pytest.raises(ProcessFailed) as failure:
        server.start(timeout=30)
    assert time.monotonic() - started < 30
    assert "no-such-option" in str(failure.value)  # the tail of mariadbd's own log


def test_the_developer_pair_starts_prints_the_urls_and_stops(tmp_path):
    directory = tmp_path / "replica"
    command = [sys.executable, "-m", "testing.mariadb_pair"]
    started = subprocess.run(
        [*command, "start", "--dir", str(directory)], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    try:
        assert started.returncode == 0, started.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in started.stdout.splitlines()
            if line.startswith("export ")
        )
        assert set(exports) == {"DATABASE_URL", "DATABASE_REPLICA_URL"}
        state = json.loads((directory / "pair.json").read_text())
        assert state["DATABASE_URL"] == exports["DATABASE_URL"]
        # Started again while it runs: the same pair.
        again = subprocess.run(
            [*command, "start", "--dir", str(directory)], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert again.stdout == started.stdout
    finally:
        stopped = subprocess.run(
            [*command, "stop", "--dir", str(directory)], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    assert stopped.returncode == 0 and not directory.exists()


def test_stopping_a_developer_pair_after_a_reboot_leaves_unrelated_processes_alone(tmp_path):
    """pair.json outlives a reboot; its process ids may then belong to anyone.
    Only a mariadbd serving this pair's data directory is killed."""
    directory = tmp_path / "replica"
    directory.mkdir()
    # An unrelated process group leader, as a recycled pid would be.
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (directory / "pair.json").write_text(json.dumps({"pids": [bystander.pid, bystander.pid]}))
        stopped = subprocess.run(
            [sys.executable, "-m", "testing.mariadb_pair", "stop", "--dir", str(directory)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stopped.returncode == 0, stopped.stderr
        assert not directory.exists()
        time.sleep(0.2)
        assert bystander.poll() is None, "the developer pair killed a process that was not its mariadbd"
    finally:
        bystander.kill()
        bystander.wait()
