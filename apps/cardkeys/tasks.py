"""Thin Celery tasks of the key pool: the admin's import jobs."""

import logging

from celery import shared_task
from django.utils.translation import gettext as _

from apps.cardkeys import import_jobs

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def import_keys_job_task(self, job_id: int):
    # A worker killed mid-import leaves the message unacknowledged and the
    # import's transaction rolled back: the next delivery starts it again from
    # the staged upload (the job counts its attempts and gives up after a few).
    try:
        import_jobs.cardkeys_import_job_run(job_id=job_id)
    except import_jobs.ImportJobRunningElsewhere as exc:
        # Never gives up while that session lives: failing the job would pull
        # its staged upload from under the running import. Soon at first (a
        # killed worker's session is gone within seconds), then every 30 s for a day.
        raise self.retry(exc=exc, countdown=min(30, 2 ** min(self.request.retries, 5)), max_retries=3000) from exc
    except import_jobs.ImportJobBusy as exc:
        if self.request.retries >= self.max_retries:
            import_jobs.cardkeys_import_job_fail(job_id=job_id, reason=str(exc))
            return
        raise self.retry(exc=exc, countdown=30) from exc
    except Exception as exc:  # the database, mostly: retry with backoff, bounded
        if self.request.retries >= self.max_retries:
            logger.exception("key import job %s failed for good", job_id)
            import_jobs.cardkeys_import_job_fail(
                job_id=job_id, reason=_("The import failed on a server error; nothing of it was stored. Try again.")
            )
            return
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc


@shared_task(acks_late=True, reject_on_worker_lost=True)
def reap_import_jobs_task():
    import_jobs.cardkeys_import_jobs_reap()
