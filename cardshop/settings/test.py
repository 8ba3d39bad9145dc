"""The test suite: the real MariaDB and Redis, with its own database and key prefix."""

from cardshop.env import env

from .base import *  # noqa: F403
from .base import CACHES, CELERY_BROKER_TRANSPORT_OPTIONS, DATABASES

# Parallel runs on one machine (a developer and CI) pick their own names.
REDIS_KEY_PREFIX = env("TEST_REDIS_KEY_PREFIX", default="cardshop-test")
CACHES["default"]["KEY_PREFIX"] = REDIS_KEY_PREFIX + ":cache"
CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = REDIS_KEY_PREFIX + ":celery:"
DATABASES["default"]["TEST"]["NAME"] = env("TEST_DATABASE_NAME", default="test_cardshop")
# Tests open and close connections across threads; persistent ones would leak.
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["replica"]["CONN_MAX_AGE"] = 0

# The suite's worker processes are watched through their INFO lines ("… ready."),
# whatever a developer's .env sets for `make run`.
WORKER_LOG_LEVEL = "INFO"

# A test whose worker processes mail picks a backend they share (apps/orders/tests/mail_backends.py).
EMAIL_BACKEND = env("TEST_EMAIL_BACKEND", default="django.core.mail.backends.locmem.EmailBackend")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LANGUAGE_CODE = "zh-hans"
# The broker shares the suite's Redis database and key prefix, so the per-test
# cleanup drops queued tasks too.
CELERY_BROKER_URL = env("TEST_CELERY_BROKER_URL", default=REDIS_URL)  # noqa: F405
