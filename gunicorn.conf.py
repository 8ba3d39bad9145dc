"""gunicorn settings read by every start of the web process (gunicorn loads
./gunicorn.conf.py by itself): run_all.sh, the Docker image, the tests.

Metrics: with PROMETHEUS_MULTIPROC_DIR set, the workers add up their metrics
in that directory (apps.monitoring.exporter); it is emptied when the master
starts, so counters begin at zero with the server and never mix two runs.

Access log: the path without its query string (order tokens travel there)
and no referrer (which can hold one), plus the request id the app answered.
"""

import os

access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from apps.monitoring.exporter import multiprocess_dir_reset

        multiprocess_dir_reset(directory)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
