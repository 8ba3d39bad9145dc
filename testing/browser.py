"""What the browser tests (pytest.mark.browser) share, as fixtures: headless
Chromium (Debian's /usr/bin/chromium, driven by Playwright), the static files
a gunicorn under test serves itself, and test-output/, where screenshots go for
a person to look at. A pytest plugin: the root conftest.py loads it."""

import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output"
ADMIN_PASSWORD = "pw-boss-123456"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@pytest.fixture
def browser(monkeypatch):
    """A launched headless Chromium (playwright.sync_api.Browser), closed after the test."""
    # Imported here so that only the browser tests pay for loading Playwright.
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: run scripts/ensure_system_packages.sh --browser"
    # Playwright's sync API runs an event loop in this thread while the test
    # lasts; the ORM calls the test makes are plain synchronous ones all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def admin_page(
    browser, *, site_url: str, next_path: str, viewport: dict, locale: str = "en-US", timezone_id: str | None = None
):
    """A new page (English unless `locale` says otherwise; in the browser's
    own timezone `timezone_id` when given), logged in to the admin of
    `site_url` through its login form as a superuser made for it, and sent on
    to `next_path`."""
    get_user_model().objects.create_superuser("boss", "boss@example.com", ADMIN_PASSWORD)
    context_options = {"locale": locale, "viewport": viewport}
    if timezone_id:
        context_options["timezone_id"] = timezone_id
    page = browser.new_context(**context_options).new_page()
    page.goto(f"{site_url}/admin/login/?next={next_path}")
    page.fill("#id_username", "boss")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    return page


@pytest.fixture
def screenshots() -> Path:
    """The folder screenshots go to (test-output/, ignored by git)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def static_served(settings, tmp_path) -> dict[str, str]:
    """The static files collected into this test's folder, and the environment
    that makes a GunicornServer serve them itself, as under `make run`."""
    settings.STATIC_ROOT = str(tmp_path / "static")
    call_command("collectstatic", interactive=False, verbosity=0)
    return {"SERVE_STATIC": "true", "STATIC_ROOT": settings.STATIC_ROOT}


def loaded_image_width(image, *, timeout_ms: int = 20_000) -> int:
    """The natural width of an <img> once the browser has loaded it (0 if it
    failed to load). Waits for the load: on a busy machine the page's other
    checks can pass before the picture has arrived."""
    image.scroll_into_view_if_needed()
    image.page.wait_for_function("i => i.complete", arg=image.element_handle(), timeout=timeout_ms)
    return image.evaluate("i => i.naturalWidth")
