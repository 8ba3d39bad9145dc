"""The test settings plus a slow page (tests/web_server_urls.py), for the web
server tests that need a request still running when a signal arrives."""

from cardshop.settings.test import *  # noqa: F403

ROOT_URLCONF = "tests.web_server_urls"
