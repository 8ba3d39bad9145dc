"""The import job's page in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright), served by gunicorn: the progress bar of a running job
refreshes itself, and the report of a finished one. Screenshots go to
test-output/ for a person to look at."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.cardkeys.models import KeyBatch, KeyImportJob
from apps.catalog.tests.factories import ProductFactory
from apps.orders.tests.processes import GunicornServer
from testing.browser import admin_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_the_job_page_shows_a_moving_progress_bar_then_the_report(browser, static_served, screenshots):
    product = ProductFactory(title="Steam 100 CNY")
    started = timezone.now() - timedelta(seconds=40)
    job = KeyImportJob.objects.create(
        product=product,
        source_name="steam-2m.txt",
        status=KeyImportJob.Status.RUNNING,
        size_bytes=52_000_000,
        bytes_read=20_800_000,
        lines_read=800_000,
        stored_count=790_112,
        duplicate_count=9_861,
        refused_count=27,
        attempts=1,
        started_at=started,
    )
    KeyImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
    server = GunicornServer(workers=1, threads=4, extra_env=static_served).start()
    try:
        page = admin_page(
            browser,
            site_url=server.url,
            next_path=f"/admin/cardkeys/keyimportjob/{job.pk}/change/",
            viewport={"width": 1100, "height": 800},
        )
        bar = page.locator("#import-progress progress")
        expect(bar).to_be_visible()
        assert bar.get_attribute("value") == "40"
        expect(page.locator("#import-progress .stored")).to_have_text("790,112")
        expect(page.locator("#import-progress .eta")).to_have_text("1:00")
        page.screenshot(path=str(screenshots / "import-job-running.png"), full_page=True)

        # The worker moves on; the page follows by itself.
        KeyImportJob.objects.filter(pk=job.pk).update(bytes_read=41_600_000, lines_read=1_600_000)
        expect(page.locator("#import-progress .lines-read")).to_have_text("1,600,000", timeout=10_000)

        KeyImportJob.objects.filter(pk=job.pk).update(
            status=KeyImportJob.Status.DONE,
            batch=KeyBatch.objects.create(product=product, source_name="steam-2m.txt"),
            lines_read=2_000_000,
            stored_count=1_990_000,
            duplicate_count=9_973,
            refused_count=27,
            finished_at=timezone.now(),
            report={
                "details": [
                    "1990000 keys imported, 9973 duplicates skipped, 27 invalid lines refused.",
                ],
                "duplicate_lines": [17, 230, 1045],
                "invalid_lines": [[88, "contains control or invisible characters"], [912, "line too long"]],
            },
        )
        expect(page.locator("#import-report")).to_be_visible(timeout=10_000)
        expect(page.locator("#import-report")).to_contain_text("line 88: contains control")
        page.screenshot(path=str(screenshots / "import-job-done.png"), full_page=True)
    finally:
        server.stop()
