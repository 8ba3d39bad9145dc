"""Reads of the key pool."""

from .models import CardKey, KeyImportJob
from .progress import ImportProgress


def order_keys_reveal(*, order_id: int) -> list[str]:
    """The plaintext keys of a delivered order, for its buyer only. Callers
    have checked the buyer's access; never log the result."""
    tokens = CardKey.objects.filter(order_id=order_id, status=CardKey.Status.SOLD).order_by("id")
    return [key.secret for key in tokens.only("id", "secret_encrypted")]


def import_job_progress(job: KeyImportJob) -> ImportProgress:
    """The job's progress as the page shows it."""
    if job.started_at is None:
        elapsed = 0.0
    else:
        end = job.finished_at if job.finished else job.heartbeat_at
        elapsed = max(0.0, (end - job.started_at).total_seconds())
    return ImportProgress(
        bytes_read=job.size_bytes if job.status == KeyImportJob.Status.DONE else job.bytes_read,
        bytes_total=job.size_bytes,
        lines_read=job.lines_read,
        stored=job.stored_count,
        duplicates=job.duplicate_count,
        refused=job.refused_count,
        elapsed=elapsed,
    )
