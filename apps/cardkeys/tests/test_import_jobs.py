"""Admin uploads as background jobs: the request answers at once, the upload is
staged encrypted (never plaintext on disk), a worker imports it with progress
on the job page, and the staging goes when the job ends, fails or is killed."""

import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections
from django.urls import reverse
from django.utils import timezone

from apps.cardkeys import import_jobs
from apps.cardkeys.models import CardKey, KeyBatch, KeyImportChunk, KeyImportJob
from apps.cardkeys.staging import StagingLost
from apps.catalog.tests.factories import ProductFactory
from testing.processes import wait_until

from .factories import CardKeyFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

SECRET = b"PLAINTEXT-KEY-5b2e91"


def upload_url(product):
    return reverse("admin:catalog_product_upload_keys", args=[product.pk])


def job_url(job):
    return reverse("admin:cardkeys_keyimportjob_change", args=[job.pk])


def key_file(count: int, prefix: bytes = b"K") -> bytes:
    return b"".join(prefix + b"-%07d-" % i + SECRET + b"\n" for i in range(count))


def files_holding(directory: Path, needle: bytes) -> list[str]:
    found = []
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(root) / name
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


# --- the request answers at once; the job does the import ---------------------


def test_upload_redirects_to_the_job_page_and_the_worker_imports_it(admin_client, admin_user):
    product = ProductFactory()
    CardKeyFactory(product=product, secret="STORED-1")
    data = b"NEW-1\nSTORED-1\nNEW-2\nNEW-1\nBAD\x07KEY\n"
    response = admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.txt", data)})
    job = KeyImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == job_url(job)
    assert job.status == KeyImportJob.Status.QUEUED and job.size_bytes == len(data)
    # Staged encrypted: the tokens are not the plaintext.
    tokens = b"".join(bytes(t) for t in KeyImportChunk.objects.filter(job=job).values_list("token", flat=True))
    assert tokens and b"NEW-1" not in tokens

    import_jobs.cardkeys_import_job_run(job_id=job.pk)  # what the worker's task does

    job.refresh_from_db()
    assert job.status == KeyImportJob.Status.DONE
    assert (job.lines_read, job.stored_count, job.duplicate_count, job.refused_count) == (5, 2, 2, 1)
    assert job.batch.uploaded_by == admin_user and job.batch.accepted_count == 2
    assert not KeyImportChunk.objects.exists()
    assert sorted(k.secret for k in CardKey.objects.filter(batch=job.batch)) == ["NEW-1", "NEW-2"]
    html = admin_client.get(job_url(job)).content.decode()
    assert "2 keys imported, 2 duplicates skipped, 1 invalid lines refused." in html
    assert "line 5: contains control or invisible characters" in html
    assert "Duplicate lines: 2, 4" in html
    assert reverse("admin:cardkeys_keybatch_change", args=[job.batch_id]) in html
    assert 'http-equiv="refresh"' not in html  # a finished job's page stays put
    listing = admin_client.get(reverse("admin:cardkeys_keyimportjob_changelist")).content.decode()
    assert "keys.txt" in listing and job_url(job) in listing


def test_pasted_keys_become_a_job_too(admin_client, celery_eager):
    product = ProductFactory()
    response = admin_client.post(upload_url(product), {"keys": "P-1\r\n\r\nP-2\r\nP-1\r\n", "column": ""})
    job = KeyImportJob.objects.get()
    assert response.status_code == 302
    job.refresh_from_db()  # ran eagerly after the request's commit
    assert (job.status, job.stored_count, job.duplicate_count) == ("done", 2, 1)
    assert not KeyImportChunk.objects.exists()


def test_a_running_job_shows_its_progress_bar_and_eta(admin_client):
    product = ProductFactory()
    started = timezone.now() - timedelta(seconds=30)
    job = KeyImportJob.objects.create(
        product=product,
        source_name="big.txt",
        status=KeyImportJob.Status.RUNNING,
        size_bytes=1000,
        bytes_read=250,
        lines_read=12000,
        stored_count=11000,
        duplicate_count=900,
        refused_count=100,
        started_at=started,
    )
    KeyImportJob.objects.filter(pk=job.pk).update(heartbeat_at=started + timedelta(seconds=30))
    html = admin_client.get(job_url(job)).content.decode()
    assert '<progress max="100" value="25">' in html
    assert ">12,000<" in html and ">11,000<" in html and ">900<" in html
    assert 'class="eta">1:30<' in html  # a quarter in 30 s: 90 s left
    assert 'http-equiv="refresh"' in html


def test_refused_file_fails_the_job_with_the_reason_and_changes_nothing(admin_client, celery_eager):
    product = ProductFactory()
    CardKeyFactory(product=product, secret="KEEP-ME")
    before = list(CardKey.objects.values_list("id", "secret_encrypted", "status"))
    admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.txt", "K-1\nK-2\n".encode("utf-16"))})
    job = KeyImportJob.objects.get()
    assert job.status == KeyImportJob.Status.FAILED and "UTF-8" in job.error
    assert job.batch is None and not KeyImportChunk.objects.exists()
    assert list(CardKey.objects.values_list("id", "secret_encrypted", "status")) == before
    assert KeyBatch.objects.count() == 1
    assert "UTF-8" in admin_client.get(job_url(job)).content.decode()


def test_a_file_whose_lines_are_all_refused_stores_no_batch(admin_client, celery_eager):
    product = ProductFactory()
    data = b"BAD\x07ONE\n" + b"x" * 600 + b"\nBAD\x01TWO\n"
    admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.txt", data)})
    job = KeyImportJob.objects.get()
    assert (job.status, job.refused_count, job.batch_id) == ("done", 3, None)
    assert not KeyBatch.objects.exists() and not CardKey.objects.exists()
    html = admin_client.get(job_url(job)).content.decode()
    assert "no batch was stored" in html and "line 2: longer than 512 characters" in html


def test_bad_extension_is_refused_in_the_request_and_nothing_is_left_staged(admin_client):
    product = ProductFactory()
    page = admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.xlsx", b"K-1\n")})
    assert page.status_code == 200 and ".txt and .csv" in page.content.decode()
    assert not KeyImportJob.objects.exists() and not KeyImportChunk.objects.exists()


# --- never plaintext on disk ------------------------------------------------------


def test_no_temp_file_holds_a_key_during_or_after_the_upload(admin_client, settings, tmp_path, monkeypatch):
    # Django's default handlers spool an upload over FILE_UPLOAD_MAX_MEMORY_SIZE
    # to a plaintext file in the temp directory for the whole request.
    temp = tmp_path / "tmp"
    temp.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(temp)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    seen_during = []
    from apps.cardkeys.forms import KeyUploadForm

    real_clean = KeyUploadForm.clean

    def clean_and_look(form):  # runs inside the request, with the whole upload received
        seen_during.extend(files_holding(temp, SECRET))
        seen_during.append("checked")
        return real_clean(form)

    monkeypatch.setattr(KeyUploadForm, "clean", clean_and_look)
    product = ProductFactory()
    data = key_file(20000)  # ~0.7 MB, several staging blocks
    response = admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.txt", data)})
    assert response.status_code == 302
    assert seen_during == ["checked"]
    assert files_holding(temp, SECRET) == []
    assert KeyImportChunk.objects.count() == 1 and KeyImportJob.objects.get().size_bytes == len(data)


# --- too large: refused before reading ----------------------------------------------


class UnreadableBody:
    """A request body that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = read


def test_file_over_the_limit_is_refused_from_its_content_length_before_reading(admin_client, settings):
    product = ProductFactory()
    response = admin_client.post(
        upload_url(product),
        {"file": SimpleUploadedFile("keys.txt", b"K-1\n")},
        CONTENT_LENGTH=str(settings.CARDKEY_IMPORT_MAX_BYTES + 1024 * 1024),
        **{"wsgi.input": UnreadableBody()},
    )
    assert response.status_code == 413
    assert "larger than 200.0\xa0MB, so it was not read" in response.content.decode()
    assert not KeyImportJob.objects.exists()


def test_file_over_a_lower_limit_is_refused_and_nothing_staged(admin_client, settings):
    settings.CARDKEY_IMPORT_MAX_BYTES = 100 * 1024
    product = ProductFactory()
    response = admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.txt", key_file(20000))})
    assert response.status_code == 413 and "so it was not read" in response.content.decode()
    assert not KeyImportJob.objects.exists() and not KeyImportChunk.objects.exists()


def test_file_over_the_limit_without_an_honest_size_is_stopped_while_arriving(admin_client, settings):
    # Under the limit plus the form's allowance by Content-Length, over the limit
    # by its file: the upload handler stops it and drops what it staged.
    settings.CARDKEY_IMPORT_MAX_BYTES = 100 * 1024
    product = ProductFactory()
    data = key_file(3500)  # ~120 KB
    response = admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.txt", data)})
    html = response.content.decode()
    assert response.status_code == 413, html[html.find("content-main") :][:1500]
    assert "so it was not read" in html
    assert not KeyImportJob.objects.exists() and not KeyImportChunk.objects.exists()


def test_a_forged_upload_is_refused_and_nothing_stays_staged(admin_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    product = ProductFactory()
    response = client.post(upload_url(product), {"file": SimpleUploadedFile("keys.txt", key_file(100))})
    assert response.status_code == 403
    assert not KeyImportJob.objects.exists() and not KeyImportChunk.objects.exists()


# --- staging removed when the job is killed ------------------------------------------


def test_a_stale_job_is_failed_and_its_staging_deleted(settings):
    settings.CARDKEY_IMPORT_JOB_STALE_SECONDS = 60
    product = ProductFactory()
    old = timezone.now() - timedelta(seconds=120)
    stale = {
        status: KeyImportJob.objects.create(product=product, status=status)
        for status in (KeyImportJob.Status.RECEIVING, KeyImportJob.Status.QUEUED, KeyImportJob.Status.RUNNING)
    }
    alive = KeyImportJob.objects.create(product=product, status=KeyImportJob.Status.RUNNING)
    for job in [*stale.values(), alive]:
        KeyImportChunk.objects.create(job=job, seq=0, token=b"x")
    KeyImportJob.objects.filter(pk__in=[j.pk for j in stale.values()]).update(heartbeat_at=old)

    assert import_jobs.cardkeys_import_jobs_reap() == 3

    assert set(KeyImportChunk.objects.values_list("job_id", flat=True)) == {alive.pk}
    for job in stale.values():
        job.refresh_from_db()
        assert job.status == KeyImportJob.Status.FAILED and job.error
    # A redelivered message of a reaped job changes nothing.
    assert import_jobs.cardkeys_import_job_run(job_id=stale["running"].pk).status == "failed"


def test_a_job_that_keeps_killing_its_worker_is_given_up(settings):
    settings.CARDKEY_IMPORT_JOB_MAX_ATTEMPTS = 2
    product = ProductFactory()
    job = KeyImportJob.objects.create(product=product, status=KeyImportJob.Status.RUNNING, attempts=2)
    KeyImportChunk.objects.create(job=job, seq=0, token=b"x")
    assert import_jobs.cardkeys_import_job_run(job_id=job.pk).status == "failed"
    assert not KeyImportChunk.objects.exists()


def test_a_second_delivery_leaves_a_job_alone_while_its_runner_lives(admin_client):
    product = ProductFactory()
    admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.txt", key_file(10))})
    job = KeyImportJob.objects.get()
    runner = connections.create_connection("default")  # the first delivery's session, still importing
    try:
        with runner.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            runner_id = cursor.fetchone()[0]
        KeyImportJob.objects.filter(pk=job.pk).update(status="running", runner_connection_id=runner_id, attempts=1)
        with pytest.raises(import_jobs.ImportJobRunningElsewhere):  # the task asks again in 30 s
            import_jobs.cardkeys_import_job_run(job_id=job.pk)
        assert not CardKey.objects.exists() and KeyImportChunk.objects.exists()
    finally:
        runner.close()

    def runner_gone():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s", [runner_id])
            return cursor.fetchone() is None

    wait_until(runner_gone, timeout=10, message="the closed session leaving the server")
    # That session gone (its worker died): the next delivery imports the job.
    job = import_jobs.cardkeys_import_job_run(job_id=job.pk)
    assert (job.status, job.stored_count, job.attempts) == ("done", 10, 2)


def test_staging_deleted_under_a_running_import_rolls_it_back(admin_client, settings):
    settings.CARDKEY_IMPORT_CHUNK_SIZE = 100
    product = ProductFactory()
    admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.txt", key_file(60000))})
    job = KeyImportJob.objects.get()
    assert KeyImportChunk.objects.filter(job=job).count() == 2
    KeyImportChunk.objects.filter(job=job, seq=1).delete()  # as a reaper would, mid-import
    with pytest.raises(StagingLost):
        import_jobs.cardkeys_import_job_run(job_id=job.pk)
    assert not CardKey.objects.exists() and not KeyBatch.objects.exists()


def pool_children(pid: int) -> list[int]:
    children = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(child) for child in path.read_text().split()]
    return children


def test_worker_sigkilled_mid_import_then_the_redelivered_job_imports_once(admin_client):
    from apps.orders.tests.processes import CeleryWorker

    product = ProductFactory()
    CardKeyFactory(product=product, secret="K-0000001-" + SECRET.decode())  # one stored duplicate
    lines = 60000
    # Small chunks: many round trips, so the kill lands mid-import.
    worker = CeleryWorker(concurrency=1, extra_env={"CARDKEY_IMPORT_CHUNK_SIZE": "100"}).start()
    try:
        admin_client.post(upload_url(product), {"file": SimpleUploadedFile("keys.txt", key_file(lines))})
        job = KeyImportJob.objects.get()
        wait_until(
            lambda: KeyImportJob.objects.filter(pk=job.pk, status="running", lines_read__gt=0).exists(),
            timeout=30,
            interval=0.05,
            message="the import under way",
        )
        # SIGKILL the pool process running the import (as the OOM killer
        # would): the worker rejects its message back to the queue
        # (reject_on_worker_lost) and a new pool process takes it.
        [child] = pool_children(worker.pid)
        os.kill(child, signal.SIGKILL)
        job.refresh_from_db()
        assert job.status == KeyImportJob.Status.RUNNING, "the import finished before the kill"
        # The killed transaction stored nothing, and the staged upload waits.
        assert CardKey.objects.filter(product=product).count() == 1
        assert KeyImportChunk.objects.filter(job=job).exists()
        wait_until(lambda: KeyImportJob.objects.get(pk=job.pk).finished, timeout=45, message="the redelivered job ends")
    finally:
        worker.stop()
    job.refresh_from_db()
    assert (job.status, job.attempts) == (KeyImportJob.Status.DONE, 2), job.error
    assert (job.stored_count, job.duplicate_count) == (lines - 1, 1)
    assert CardKey.objects.filter(product=product).count() == lines
    assert CardKey.objects.filter(batch=job.batch).count() == lines - 1
    assert not KeyImportChunk.objects.exists()
