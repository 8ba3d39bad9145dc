#!/usr/bin/env python
"""Serve the shop with Granian (WSGI interface): what
`granian --interface wsgi cardshop.wsgi:application` does, plus what
gunicorn.conf.py gives gunicorn, which Granian's command line cannot:

- Metrics: with PROMETHEUS_MULTIPROC_DIR set, the directory is emptied
  before the workers start (counters begin at zero with the server), and the
  metrics files of a worker that stopped (reload, crash, shutdown) are marked
  dead, as gunicorn's child_exit does (prometheus_client.multiprocess).
  Granian has no per-worker exit hook: the two methods that stop workers are
  wrapped (pinned Granian version; tests/test_web_server_granian.py checks it).
- Access log: Granian's own is off (its format would name the query string,
  where order tokens travel, and cannot name the request id the app answered);
  --access-log serves cardshop.wsgi:application_access_logged instead
  (apps.core.access_log: gunicorn's line, through the app's logging).
- A worker that dies is started again (gunicorn's master does the same).
- Graceful stop and reload: SIGTERM/SIGINT stop, SIGHUP starts new workers one
  at a time and stops each old one; a worker that has not finished its
  requests --graceful-timeout seconds after being told to stop is killed
  (gunicorn's --graceful-timeout).
- One listening socket, bound by the master and inherited by the workers, as
  under gunicorn. Granian's own choice on Linux (--reuseport) is a socket per
  worker (SO_REUSEPORT): the connections queued at a worker that stops are
  then reset unless the kernel migrates them (sysctl
  net.ipv4.tcp_migrate_req=1, Linux 5.14+), so a reload drops some requests.

    .venv/bin/python scripts/granian_serve.py --port 8000 --workers 2 --threads 16 --access-log
"""

import argparse
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from granian.constants import Interfaces  # noqa: E402
from granian.log import LogLevels  # noqa: E402
from granian.net import SocketSpec  # noqa: E402
from granian.server import Server  # noqa: E402


def _metrics_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _processes_dead(pids) -> None:
    if _metrics_dir():
        from prometheus_client import multiprocess

        for pid in pids:
            if pid:
                multiprocess.mark_process_dead(pid)


class CardshopGranian(Server):
    """Granian's server with gunicorn's child_exit (the metrics files of the
    workers it stops are marked dead) and, unless reuseport, gunicorn's one
    listening socket held by the master and shared by the workers."""

    reuseport = False

    def _init_shared_socket(self):
        if self.reuseport or self.bind_uds:
            return super()._init_shared_socket()
        # What Granian does where SO_REUSEPORT is not used: the master binds,
        # the workers inherit the descriptor. A connection waiting in the one
        # accept queue survives a worker's restart.
        self._shd = SocketSpec(self.bind_addr, self.bind_port, self.backlog).build()
        self._sfd = self._shd.get_fd()
        self._ssp = None
        self._sso = socket.socket(fileno=self._sfd)
        self._sso.set_inheritable(True)

    def _respawn_workers(self, workers, *args, **kwargs):
        before = {worker._id() for worker in self.wrks}
        try:
            super()._respawn_workers(workers, *args, **kwargs)
        finally:
            _processes_dead(before - {worker._id() for worker in self.wrks})

    def _stop_workers(self):
        pids = {worker._id() for worker in self.wrks}
        try:
            super()._stop_workers()
        finally:
            _processes_dead(pids)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_WORKERS", 2)))
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("WEB_THREADS", 16)),
        help="Python (blocking) threads per worker: the requests a worker runs at once",
    )
    parser.add_argument(
        "--backpressure",
        type=int,
        default=0,
        help="connections a worker serves at once, more wait in the listen backlog; 0: Granian's default, "
        "backlog ÷ workers. Not --threads: a keep-alive connection holds its place while idle, so a bound "
        "near the thread count leaves the other clients waiting for an idle connection to time out",
    )
    parser.add_argument("--backlog", type=int, default=2048)
    parser.add_argument("--graceful-timeout", type=int, default=20, help="seconds a stopping worker may finish in")
    parser.add_argument(
        "--respawn-interval",
        type=float,
        default=3.5,
        help="on SIGHUP, seconds a new worker gets to start before the old one is stopped (Granian's default); "
        "shorter than the app's start time leaves moments with fewer workers listening",
    )
    parser.add_argument(
        "--reuseport",
        action="store_true",
        help="Granian's own choice on Linux: a listening socket per worker (SO_REUSEPORT); connections queued "
        "at a worker that stops are reset unless sysctl net.ipv4.tcp_migrate_req=1",
    )
    parser.add_argument("--access-log", action="store_true", help="one line a request, without tokens")
    parser.add_argument("--log-level", default="info", choices=[level.value for level in LogLevels])
    args = parser.parse_args(argv)

    if directory := _metrics_dir():
        from apps.monitoring.exporter import multiprocess_dir_reset

        multiprocess_dir_reset(directory)

    target = "cardshop.wsgi:application_access_logged" if args.access_log else "cardshop.wsgi:application"
    server = CardshopGranian(
        target,
        address=args.host,
        port=args.port,
        interface=Interfaces.WSGI,
        workers=args.workers,
        blocking_threads=args.threads,
        backpressure=args.backpressure or None,
        backlog=args.backlog,
        http1_settings=None,
        websockets=False,
        log_level=LogLevels(args.log_level),
        log_access=False,
        respawn_failed_workers=True,
        respawn_interval=args.respawn_interval,
        workers_kill_timeout=args.graceful_timeout,
        working_dir=ROOT,
    )
    server.reuseport = args.reuseport
    server.serve()


if __name__ == "__main__":
    main()
