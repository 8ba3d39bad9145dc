"""Imports from the admin as background jobs (KeyImportJob).

The admin request stages the upload encrypted (staging.py) and answers at
once; a worker imports it through the same cardkeys_import_rows as the
`import_keys` command, writing its progress on the job row about once a
second, and records the outcome in the import's own transaction, so a job is
never reported done without its keys or stored twice. The staged upload is
deleted when the job ends or fails; a worker killed mid-import leaves its
message unacknowledged (acks_late) and the next delivery starts the import
again from the staged upload; a job nobody finishes is failed and its
staging deleted by cardkeys_import_jobs_reap.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from apps.cardkeys import tasks

from .exceptions import ImportRefused
from .models import KeyImportChunk, KeyImportJob
from .services import ImportReport, cardkeys_import_lock, cardkeys_import_rows, import_lock_busy
from .staging import StagedUpload, StagingLost, StagingWriter

logger = logging.getLogger(__name__)

Status = KeyImportJob.Status
UNFINISHED = (Status.RECEIVING, Status.QUEUED, Status.RUNNING)
# Seconds between two progress writes: the page polls about this often.
PROGRESS_INTERVAL = 1.0


class ImportJobBusy(Exception):
    """Another import of the product held the lock for CARDKEY_IMPORT_LOCK_TIMEOUT; try later."""


class ImportJobRunningElsewhere(Exception):
    """The session that started importing the job still lives: a second delivery
    of its message (the Redis broker redelivers an import that outlasts its
    visibility timeout), or a killed worker's session still rolling back. Ask
    again later: then the job is done, or the session gone and the job ours."""


def cardkeys_import_job_create(*, product_id: int, uploaded_by, source_name: str, language: str) -> KeyImportJob:
    """A job receiving its upload; stage the upload, then cardkeys_import_job_start."""
    return KeyImportJob.objects.create(
        product_id=product_id, uploaded_by=uploaded_by, source_name=source_name[:255], language=language[:16]
    )


def cardkeys_import_job_stage_text(*, job_id: int, text: str) -> int:
    """Stages pasted keys like a file; returns their size in bytes."""
    writer = StagingWriter(job_id=job_id)
    writer.write(text.encode("utf-8"))
    return writer.close()


@transaction.atomic(durable=True)
def cardkeys_import_job_start(*, job_id: int, column: str, size_bytes: int) -> None:
    """The upload is staged: queue the job; a worker picks it up after commit."""
    KeyImportJob.objects.filter(pk=job_id, status=Status.RECEIVING).update(
        status=Status.QUEUED, column=column[:100], size_bytes=size_bytes, heartbeat_at=timezone.now()
    )
    tasks.import_keys_job_task.delay_on_commit(job_id)


def cardkeys_import_jobs_discard(*, job_ids: list[int]) -> None:
    """Drops jobs whose request was refused before they started, with their staged upload."""
    if job_ids:
        KeyImportChunk.objects.filter(job_id__in=job_ids).delete()
        KeyImportJob.objects.filter(pk__in=job_ids, status=Status.RECEIVING).delete()


def cardkeys_import_job_run(*, job_id: int) -> KeyImportJob | None:
    """Imports a queued job's staged upload; a no-op for a finished job, so a
    redelivered message is harmless. Raises ImportJobBusy when another import
    of the product holds the lock too long, and database errors (the task
    retries), ImportJobRunningElsewhere while another session imports it;
    a refused upload ends the job failed with the reason."""
    job = KeyImportJob.objects.filter(pk=job_id).first()
    if job is None or job.status not in (Status.QUEUED, Status.RUNNING):
        return job
    if _runner_alive(job):
        raise ImportJobRunningElsewhere(f"import job {job_id} is being imported by session {job.runner_connection_id}")
    with cardkeys_import_lock(product_id=job.product_id) as held:
        if not held:
            raise ImportJobBusy(str(import_lock_busy().detail))
        # Read again under the lock: a second delivery of the message (the
        # Redis broker redelivers after its visibility timeout) waited here
        # while the first finished the job.
        job = KeyImportJob.objects.select_related("product", "uploaded_by").get(pk=job_id)
        if job.status not in (Status.QUEUED, Status.RUNNING) or _runner_alive(job):
            return job
        with translation.override(job.language or None):
            if job.attempts >= settings.CARDKEY_IMPORT_JOB_MAX_ATTEMPTS:
                _job_fail(
                    job_id=job.pk,
                    reason=_(
                        "The import was started %(count)d times and never finished (its worker stopped); "
                        "nothing of it was stored."
                    )
                    % {"count": job.attempts},
                )
                return _reload(job)
            _job_mark_running(job)
            _job_import(job)
    return _reload(job)


def _runner_alive(job: KeyImportJob) -> bool:
    """Whether the database session that started importing the job is still there."""
    if job.status != Status.RUNNING or not job.runner_connection_id:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        if cursor.fetchone()[0] == job.runner_connection_id:
            return False  # this very session: no one else
        cursor.execute("SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s", [job.runner_connection_id])
        return cursor.fetchone() is not None


def _job_mark_running(job: KeyImportJob) -> None:
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        session = cursor.fetchone()[0]
    KeyImportJob.objects.filter(pk=job.pk).update(
        runner_connection_id=session,
        status=Status.RUNNING,
        attempts=job.attempts + 1,
        started_at=now,
        heartbeat_at=now,
        bytes_read=0,
        lines_read=0,
        stored_count=0,
        duplicate_count=0,
        refused_count=0,
    )
    job.started_at = now


def _job_import(job: KeyImportJob) -> None:
    source = StagedUpload(job_id=job.pk, size=job.size_bytes)
    progress = _ProgressWriter(job_id=job.pk, source=source)
    try:
        with transaction.atomic(durable=True):
            report = cardkeys_import_rows(
                product=job.product,
                source=source,
                file_name=job.source_name,
                uploaded_by=job.uploaded_by,
                column=job.column or None,
                progress=progress,
            )
            progress.close()  # nothing more may touch the row this transaction now updates
            _job_finish(job_id=job.pk, report=report, bytes_read=source.position, lines_read=progress.lines_read)
    except ImportRefused as exc:
        progress.close()
        _job_fail(job_id=job.pk, reason=str(exc.detail))
    finally:
        progress.close()
        source.close()


def _job_finish(*, job_id: int, report: ImportReport, bytes_read: int, lines_read: int) -> None:
    """Inside the import's transaction: the job is done exactly when its keys are stored.
    Raises StagingLost (rolling the import back) if the job was ended meanwhile."""
    finished = KeyImportJob.objects.filter(pk=job_id, status=Status.RUNNING).update(
        status=Status.DONE,
        batch_id=report.batch_id,
        bytes_read=bytes_read,
        lines_read=lines_read,
        stored_count=report.accepted,
        duplicate_count=report.duplicates,
        refused_count=report.invalid,
        report={
            "details": report.details(),
            "duplicate_lines": report.duplicate_lines,
            "invalid_lines": [[number, str(reason)] for number, reason in report.invalid_lines],
            "elsewhere": report.elsewhere,
            "elsewhere_lines": report.elsewhere_lines,
            "elsewhere_skus": report.elsewhere_skus,
            "elsewhere_warning": report.elsewhere_warning() if report.elsewhere else "",
        },
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    if not finished:
        raise StagingLost(f"import job {job_id} was ended while importing")
    KeyImportChunk.objects.filter(job_id=job_id).delete()


@transaction.atomic(durable=True)
def _job_fail(*, job_id: int, reason: str) -> bool:
    """Ends an unfinished job as failed and deletes its staged upload. False if it had ended already."""
    failed = KeyImportJob.objects.filter(pk=job_id, status__in=UNFINISHED).update(
        status=Status.FAILED, error=reason, finished_at=timezone.now(), heartbeat_at=timezone.now()
    )
    KeyImportChunk.objects.filter(job_id=job_id).delete()
    return bool(failed)


def cardkeys_import_job_fail(*, job_id: int, reason: str) -> bool:
    """For the task when its retries are spent: the job ends failed, its staging deleted."""
    return _job_fail(job_id=job_id, reason=reason)


def cardkeys_import_jobs_reap() -> int:
    """Fails the unfinished jobs whose heartbeat stopped more than
    CARDKEY_IMPORT_JOB_STALE_SECONDS ago (an upload cut off, a worker and its
    message both lost) and deletes their staged uploads. A running import
    beats every second. Returns how many jobs it failed."""
    cutoff = timezone.now() - timedelta(seconds=settings.CARDKEY_IMPORT_JOB_STALE_SECONDS)
    stale = list(KeyImportJob.objects.filter(status__in=UNFINISHED, heartbeat_at__lt=cutoff))
    failed = 0
    for job in stale:
        job_id, status = job.pk, job.status
        if _runner_alive(job):
            continue  # slow, not dead: its session still holds the import
        if status == Status.RECEIVING:
            reason = _("The upload did not finish; nothing of it was stored. Upload the file again.")
        else:
            reason = _("The import stopped without finishing (its worker was lost); nothing of it was stored.")
        if _job_fail(job_id=job_id, reason=reason):
            failed += 1
            logger.warning("key import job %s reaped (%s, heartbeat stopped)", job_id, status)
    # Staging rows whose job is gone (cannot happen through the services; cheap to be sure).
    KeyImportChunk.objects.exclude(job__status__in=UNFINISHED).delete()
    return failed


def _reload(job: KeyImportJob) -> KeyImportJob:
    return KeyImportJob.objects.get(pk=job.pk)


class _ProgressWriter:
    """Writes a running job's progress on its row at most once a second, on a
    connection of its own: the import's transaction stays open until the end,
    and its writes are invisible to the page until then."""

    def __init__(self, *, job_id: int, source: StagedUpload):
        self._job_id = job_id
        self._source = source
        self._connection = connections.create_connection(DEFAULT_DB_ALIAS)
        self._last = 0.0
        self._closed = False
        self.lines_read = 0

    def __call__(self, lines_read: int, report: ImportReport) -> None:
        self.lines_read = lines_read
        now = time.monotonic()
        if self._closed or now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        table = self._connection.ops.quote_name(KeyImportJob._meta.db_table)
        with self._connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET bytes_read = %s, lines_read = %s, stored_count = %s, duplicate_count = %s, "
                "refused_count = %s, heartbeat_at = %s WHERE id = %s AND status = %s",
                [
                    self._source.position,
                    lines_read,
                    report.accepted,
                    report.duplicates,
                    report.invalid,
                    self._connection.ops.adapt_datetimefield_value(timezone.now()),
                    self._job_id,
                    Status.RUNNING.value,
                ],
            )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._connection.close()
