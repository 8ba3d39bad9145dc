"""Serving the metrics: who may read them, and which registry answers.

/metrics is for Prometheus, not the public: a request is answered when it
comes from an allowed network (METRICS_ALLOWED_NETWORKS, loopback by default)
or carries `Authorization: Bearer <METRICS_TOKEN>`. Behind our proxy the
client address is the one the proxy saw (apps.core.client_ip), so a public
request relayed by nginx never counts as local.

In multiprocess mode (PROMETHEUS_MULTIPROC_DIR) the answer adds up the files
of every process sharing the directory: all gunicorn workers of one server,
or all pool processes of one Celery worker. Web and worker use different
directories; the worker serves its own port (WORKER_METRICS_PORT), so each
host's worker is scraped, and missing, on its own.
"""

import functools
import hmac
import ipaddress
import logging
import os
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app, multiprocess
from prometheus_client.exposition import ThreadingWSGIServer

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _networks(spec: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in spec if n.strip())


def metrics_access_allowed(*, remote_addr: str, authorization: str) -> bool:
    token = settings.METRICS_TOKEN
    if token and authorization.startswith("Bearer "):
        given = authorization.removeprefix("Bearer ").strip().encode()
        if hmac.compare_digest(given, token.encode()):
            return True
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def multiprocess_dir_reset(path: str) -> None:
    """Empty a multiprocess directory before the processes writing to it start:
    files of a previous run would otherwise be added to this one's counts."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


class _ThisProcess:
    """This process's own registry, when there is no multiprocess directory."""

    def collect(self):
        return REGISTRY.collect()


def process_metrics_registry(*extra_collectors) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    for collector in extra_collectors:
        registry.register(collector)
    return registry


# --- The Celery worker's own endpoint


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # a scrape every 15 s is not news
        pass


def worker_exporter_start(*, address: str, port: int) -> ThreadingWSGIServer | None:
    """Serve this worker's metrics (all its pool processes) on address:port in
    a daemon thread, with the same access rule as /metrics. A port already
    taken is logged, not fatal: the worker's job is tasks."""
    metrics_app = make_wsgi_app(process_metrics_registry())

    def guarded(environ, start_response):
        if not metrics_access_allowed(
            remote_addr=environ.get("REMOTE_ADDR", ""), authorization=environ.get("HTTP_AUTHORIZATION", "")
        ):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"forbidden\n"]
        return metrics_app(environ, start_response)

    try:
        server = make_server(address, port, guarded, ThreadingWSGIServer, handler_class=_QuietHandler)
    except OSError as exc:
        logger.error("worker metrics not served on %s:%s: %s", address, port, exc)
        return None
    threading.Thread(target=server.serve_forever, name="metrics-exporter", daemon=True).start()
    logger.info("worker metrics served on http://%s:%s/metrics", address, server.server_port)
    return server
