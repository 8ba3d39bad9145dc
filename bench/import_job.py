"""Benchmark: a key file uploaded through the admin and imported by a Celery worker.

    .venv/bin/python -m bench.import_job [--lines 2000000]

The whole path of an admin upload: the multipart POST to the upload page (in
this process, through Django's test client, so the upload handler encrypts it
into staging rows as a real request would), then a real `celery worker`
process (prefork, one child) that imports the job. Reports how long the
request took, the import's lines/s (job started → finished), and the peak RSS
(VmHWM) of the worker child that ran it.

Recreates its own database (BENCH_DATABASE_NAME, default
cardshop_bench_import_job) and uses its own Redis key prefix and broker
prefix, so it never touches the shop's data or another run's queue.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.import_keys import _recreate_database, _write_keys  # noqa: E402

PREFIX = "cardshop-bench-import-job"


def _database_url() -> tuple[str, str]:
    url = os.environ.get("DATABASE_URL", "mysql://root:@127.0.0.1:3306/cardshop")
    name = os.environ.get("BENCH_DATABASE_NAME", "cardshop_bench_import_job")
    return urlunsplit(urlsplit(url)._replace(path="/" + name)), name


def _children(pid: int) -> list[int]:
    found = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in path.read_text().split()]
    return found


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    args = parser.parse_args()

    url, name = _database_url()
    os.environ.update(
        {
            "DATABASE_URL": url,
            "DATABASE_REPLICA_URL": url,
            "REDIS_KEY_PREFIX": PREFIX,
            "DJANGO_SETTINGS_MODULE": "cardshop.settings.local",
            "DJANGO_DEBUG": "false",
        }
    )
    _recreate_database(name)

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from apps.cardkeys.models import CardKey, KeyImportChunk, KeyImportJob
    from apps.catalog.models import Product
    from testing.processes import ChildProcess, celery_worker_command

    call_command("migrate", verbosity=0)
    product = Product.objects.create(sku="BENCH-JOB", title="Import job benchmark", price="1.00")
    admin = User.objects.create_superuser("bench", "bench@example.com", "bench-password")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(admin)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keys.txt"
        _write_keys(path, args.lines)
        data = path.read_bytes()
    size = len(data)
    upload = SimpleUploadedFile("keys.txt", data)
    del data

    worker = ChildProcess(
        "bench-import-worker",
        celery_worker_command(concurrency=1, hostname=f"bench-import-{os.getpid()}@%h"),
        env=dict(os.environ),
    )
    worker.start().wait_for_log(" ready.", timeout=60)
    try:
        started = time.perf_counter()
        response = client.post(reverse("admin:catalog_product_upload_keys", args=[product.pk]), {"file": upload})
        request_seconds = time.perf_counter() - started
        assert response.status_code == 302, response.status_code
        job = KeyImportJob.objects.get()
        staged_rows = KeyImportChunk.objects.filter(job=job).count()
        peak = 0.0
        polls = 0
        while not job.finished:
            time.sleep(0.5)
            polls += 1
            for child in _children(worker.pid):
                try:
                    peak = max(peak, _peak_rss_mb(child))
                except OSError:
                    pass
            job.refresh_from_db()
            if time.perf_counter() - started > 1800:
                raise SystemExit("the job did not finish within 30 minutes")
        for child in _children(worker.pid):
            peak = max(peak, _peak_rss_mb(child))
    finally:
        worker.stop()
    import_seconds = (job.finished_at - job.started_at).total_seconds()
    print(
        json.dumps(
            {
                "lines": args.lines,
                "file_mb": round(size / 1024 / 1024, 1),
                "status": job.status,
                "stored": job.stored_count,
                "stored_rows": CardKey.objects.filter(product=product).count(),
                "duplicates": job.duplicate_count,
                "refused": job.refused_count,
                "staged_rows_during_job": staged_rows,
                "staged_rows_after_job": KeyImportChunk.objects.count(),
                "request_seconds": round(request_seconds, 2),
                "import_seconds": round(import_seconds, 2),
                "lines_per_s": round(args.lines / import_seconds),
                "worker_child_peak_rss_mb": peak,
                "progress_polls": polls,
                "machine": f"{platform.machine()} {os.cpu_count()} CPU, {platform.python_implementation()} {platform.python_version()}",
                "database": name,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
