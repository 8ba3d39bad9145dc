"""A private MariaDB primary and read replica: two `mariadbd` processes, each
with its own data directory (mariadb-install-db), port and unix socket, GTID
replication primary → replica, `read_only` on the replica. The shared MariaDB
on 3306 is never touched.

Used by the replica tests (tests/test_replica.py, as a fixture) and by a
developer (`make replica`, scripts/replica.sh), who runs this module:

    python -m testing.mariadb_pair start --dir var/replica   # prints the URLs to export
    python -m testing.mariadb_pair stop --dir var/replica    # kills both, removes the directory

Replication runs with real accounts (a `repl` user for the replica's I/O
thread; an application user without the privilege to write past read_only),
so it is not started with --skip-grant-tables. We run as root: mariadbd is
given --user=root, which it accepts from root.

No Django and no pytest here: a missing binary raises ProcessFailed saying how
to install it."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

from .processes import ChildProcess, ProcessFailed, free_port

MARIADBD = "/usr/sbin/mariadbd"
APP_USER, APP_PASSWORD = "cardshop", "cardshop"
REPL_USER, REPL_PASSWORD = "repl", "repl"
# What the shop's account may do: everything its migrations and requests need,
# and to read replication status (SLAVE MONITOR, for the lag check), but not
# READ_ONLY ADMIN or SUPER, so the replica's read_only holds for it too.
APP_PRIVILEGES = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, REFERENCES, INDEX, ALTER, CREATE TEMPORARY TABLES, "
    "LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER, SLAVE MONITOR"
)


def _binaries() -> tuple[str, str]:
    """mariadbd and mariadb-install-db. Raises ProcessFailed, saying how to install them."""
    install_db = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
    for path in (MARIADBD, install_db):
        if not os.access(path, os.X_OK):
            raise ProcessFailed(
                f"{path} is missing: MariaDB is not installed "
                "(scripts/ensure_system_packages.sh installs the Debian package mariadb-server)"
            )
    return MARIADBD, install_db


class MariaDBServer(ChildProcess):
    """One `mariadbd` on 127.0.0.1:<port> and `<dir>/mysqld.sock`, data in
    `<dir>/data` (created by mariadb-install-db on first start). Small on
    purpose: a 32 MB buffer pool, no performance_schema, no name resolution.
    start() again after kill() or stop() reuses the data, as a restarted
    server does."""

    def __init__(self, *, dir: Path, server_id: int, name: str, extra_args: tuple[str, ...] = (), port: int = 0):
        mariadbd, self.install_db = _binaries()
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self.port = port or free_port()
        argv = [
            mariadbd,
            "--no-defaults",  # never the machine's /etc/mysql files (the shared server's)
            "--user=root",
            f"--datadir={self.data_dir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={self.dir / 'mysqld.pid'}",
            f"--tmpdir={self.dir}",
            f"--server-id={server_id}",
            "--skip-name-resolve",
            "--performance-schema=OFF",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            # A throwaway server: an OS crash may lose the last second, nothing more.
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=300",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--log-bin-trust-function-creators=1",
            *extra_args,
        ]
        super().__init__(name, argv, cwd=self.dir, log_path=self.dir / "mariadbd.log")

    def install(self) -> None:
        if (self.data_dir / "mysql").is_dir():
            return
        result = subprocess.run(
            [
                self.install_db,
                "--no-defaults",
                "--user=root",
                f"--datadir={self.data_dir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ProcessFailed(f"mariadb-install-db failed in {self.data_dir}:\n{result.stdout}\n{result.stderr}")

    def start(self, timeout: float = 60) -> Self:
        self.install()
        return super().start().wait_until(self.answers, timeout=timeout, what=f"connections on {self.socket}")

    def connect(self, *, timeout: int = 2):
        """A root connection through the unix socket (autocommit)."""
        import MySQLdb  # the driver Django uses; imported here so the module stays light

        connection = MySQLdb.connect(unix_socket=str(self.socket), user="root", connect_timeout=timeout)
        connection.autocommit(True)
        return connection

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            self.connect(timeout=1).close()
            return True
        except Exception:  # not ready yet (MySQLdb.OperationalError; the import is lazy)
            return False

    def sql(self, *statements: str) -> list[tuple]:
        """Run statements as root; returns the last one's rows."""
        connection = self.connect()
        try:
            cursor = connection.cursor()
            rows: list[tuple] = []
            for statement in statements:
                cursor.execute(statement)
                rows = list(cursor.fetchall() or [])
            return rows
        finally:
            connection.close()

    def status(self, statement: str) -> dict | None:
        """The first row of a SHOW statement as a dict (None when it has none)."""
        connection = self.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(statement)
            row = cursor.fetchone()
            return None if row is None else dict(zip([d[0] for d in cursor.description], row, strict=True))
        finally:
            connection.close()

    def url(self, database: str, *, user: str = APP_USER, password: str = APP_PASSWORD) -> str:
        return f"mysql://{user}:{password}@127.0.0.1:{self.port}/{database}"


class MariaDBPair:
    """A primary (log-bin, server-id 1) and its replica (server-id 2,
    read_only, replicating with MASTER_USE_GTID=slave_pos). Both listen on
    127.0.0.1 on ports of their own. The application account (`cardshop` /
    `cardshop`, from 127.0.0.1) and the database `database` are created on the
    primary and reach the replica by replication, as in production.

    A context manager: entering starts both (bounded by `start_timeout`;
    a failure raises ProcessFailed with the log's tail, and removes what it
    started), leaving kills both and deletes `dir`."""

    def __init__(self, *, dir: Path | None = None, database: str = "cardshop", start_timeout: float = 60):
        self.dir = Path(dir) if dir is not None else Path(tempfile.mkdtemp(prefix="mariadb-pair-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.start_timeout = start_timeout
        self.primary = MariaDBServer(
            dir=self.dir / "primary",
            server_id=1,
            name="mariadb-primary",
            extra_args=("--log-bin=mariadb-bin", "--binlog-format=ROW"),
        )
        self.replica = MariaDBServer(
            dir=self.dir / "replica",
            server_id=2,
            name="mariadb-replica",
            # --skip-slave-start: a restarted replica waits to be told, as an operator would.
            extra_args=("--read-only=1", "--relay-log=mariadb-relay", "--skip-slave-start"),
        )

    @property
    def primary_url(self) -> str:
        return self.primary.url(self.database)

    @property
    def replica_url(self) -> str:
        return self.replica.url(self.database)

    def start(self, *, remove_on_failure: bool = True) -> Self:
        """Raises ProcessFailed; what started is killed, and the directory
        deleted unless remove_on_failure=False (a developer's data)."""
        deadline = time.monotonic() + self.start_timeout
        try:
            self.primary.start(timeout=self.start_timeout)
            self.primary.sql(
                f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD}'",
                f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1'",
                f"CREATE USER IF NOT EXISTS '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{APP_PASSWORD}'",
                f"GRANT {APP_PRIVILEGES} ON *.* TO '{APP_USER}'@'127.0.0.1'",
                f"CREATE DATABASE IF NOT EXISTS `{self.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            )
            self.replica.start(timeout=max(1.0, deadline - time.monotonic()))
            self.replication_start()
            self.wait_caught_up(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            if remove_on_failure:
                self.remove()
            else:
                self.kill()
            raise
        return self

    def replication_start(self) -> None:
        """Point the replica at the primary and start both threads. A new
        replica starts from the beginning of the primary's binary log (the
        users and the database come along); one that replicated before goes
        on from its own GTID position (gtid_slave_pos), also when the
        primary's port changed (a developer's pair started again)."""
        first = self.replica.status("SHOW SLAVE STATUS") is None
        self.replica.sql(
            "SET GLOBAL gtid_slave_pos = ''" if first else "STOP SLAVE",
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={self.primary.port}, "
            f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', "
            "MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos",
            "START SLAVE",
        )

    def replication_stop(self, *, sql_thread_only: bool = False) -> None:
        self.replica.sql("STOP SLAVE SQL_THREAD" if sql_thread_only else "STOP SLAVE")

    def replica_status(self) -> dict:
        """SHOW SLAVE STATUS on the replica."""
        return self.replica.status("SHOW SLAVE STATUS") or {}

    def caught_up(self) -> bool:
        """The replica has applied every transaction the primary has logged."""
        primary_pos = self.primary.sql("SELECT @@gtid_binlog_pos")[0][0]
        replica_pos = self.replica.sql("SELECT @@gtid_slave_pos")[0][0]
        status = self.replica_status()
        if status.get("Slave_IO_Running") != "Yes" or status.get("Slave_SQL_Running") != "Yes":
            return False
        return primary_pos == replica_pos

    def wait_caught_up(self, *, timeout: float = 30) -> None:
        """Raises ProcessFailed, with the replica's error and its log's tail, after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.caught_up():
                return
            time.sleep(0.1)
        status = self.replica_status()
        errors = {
            k: status.get(k) for k in ("Slave_IO_Running", "Slave_SQL_Running", "Last_IO_Error", "Last_SQL_Error")
        }
        raise ProcessFailed(f"the replica did not catch up in {timeout}s: {errors}\n{self.replica.log_tail()}")

    def kill(self) -> None:
        """SIGKILL both servers (their data stays)."""
        for server in (self.replica, self.primary):
            server.kill()
            server._reap_group()

    def remove(self) -> None:
        """Kill both servers and delete the directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()


# --- a developer's pair (make replica): started detached, found again by its state file

STATE_FILE = "pair.json"


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a detached server's parent is gone; whoever
    adopted it may not reap it at once)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def developer_start(*, dir: Path, database: str) -> dict:
    """Start a pair in `dir` that outlives this command (each server in its
    own session), or find the one already running there. Returns its state."""
    state_path = dir / STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if all(_alive(pid) for pid in state["pids"]):
            return state
        # One died (or the machine restarted): start both again on their data.
        _kill(state["pids"], dir=dir)
    # On failure the data and logs stay in `dir` for a look; make replica-stop removes them.
    pair = MariaDBPair(dir=dir, database=database, start_timeout=120).start(remove_on_failure=False)
    state = {
        "DATABASE_URL": pair.primary_url,
        "DATABASE_REPLICA_URL": pair.replica_url,
        "pids": [pair.primary.pid, pair.replica.pid],
        "primary_socket": str(pair.primary.socket),
        "replica_socket": str(pair.replica.socket),
    }
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    return state


def developer_stop(*, dir: Path) -> bool:
    """Kill the pair started in `dir` and delete the directory. False when none was there."""
    state_path = dir / STATE_FILE
    if not dir.exists():
        return False
    if state_path.exists():
        _kill(json.loads(state_path.read_text())["pids"], dir=dir)
    shutil.rmtree(dir, ignore_errors=True)
    return True


def _is_pair_server(pid: int, *, dir: Path) -> bool:
    """Whether `pid` is a mariadbd whose data directory lies in `dir`. After a
    reboot the pids in pair.json may belong to anything, even a process group
    leader of someone else's."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not argv or Path(os.fsdecode(argv[0])).name != "mariadbd":
        return False
    for arg in map(os.fsdecode, argv):
        if arg.startswith("--datadir=") and Path(arg.removeprefix("--datadir=")).resolve().is_relative_to(
            dir.resolve()
        ):
            return True
    return False


def _kill(pids: list[int], *, dir: Path) -> None:
    for pid in pids:
        if not _is_pair_server(pid, dir=dir):
            continue
        try:
            os.killpg(pid, signal.SIGKILL)  # each server leads its own process group
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A private MariaDB primary and read replica for development.")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=Path("var/replica"))
    parser.add_argument("--database", default="cardshop")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    if args.action == "stop":
        print("stopped and removed" if developer_stop(dir=directory) else f"no pair in {directory}")
        return 0
    if args.action == "status":
        state_path = directory / STATE_FILE
        if not state_path.exists():
            print(f"no pair in {directory}")
            return 1
        state = json.loads(state_path.read_text())
        print(json.dumps(state, indent=2))
        return 0 if all(_alive(pid) for pid in state["pids"]) else 1
    try:
        state = developer_start(dir=directory, database=args.database)
    except ProcessFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"# MariaDB primary and replica in {directory}; stop with `make replica-stop`")
    print(f"export DATABASE_URL={state['DATABASE_URL']}")
    print(f"export DATABASE_REPLICA_URL={state['DATABASE_REPLICA_URL']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
