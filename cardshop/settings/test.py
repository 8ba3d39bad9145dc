"""The test suite: the real MariaDB and Redis, with its own database and key prefix."""

from urllib.parse import quote

from cardshop.broker import broker_queues, broker_transport_options
from cardshop.env import env

from .base import *  # noqa: F403
from .base import BROKER_VISIBILITY_TIMEOUT, CACHES, DATABASES, TASK_QUEUE_NAMES

# Parallel runs on one machine (a developer and CI) pick their own names.
REDIS_KEY_PREFIX = env("TEST_REDIS_KEY_PREFIX", default="cardshop-test")
CACHES["default"]["KEY_PREFIX"] = REDIS_KEY_PREFIX + ":cache"
DATABASES["default"]["TEST"]["NAME"] = env("TEST_DATABASE_NAME", default="test_cardshop")
# Tests open and close connections across threads; persistent ones would leak.
# A server process under test may keep them as production does (tests/test_replica.py).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("TEST_DATABASE_CONN_MAX_AGE", default=0)
DATABASES["replica"]["CONN_MAX_AGE"] = env.int("TEST_DATABASE_CONN_MAX_AGE", default=0)

# The suite's worker processes are watched through their INFO lines ("… ready."),
# whatever a developer's .env sets for `make run`.
WORKER_LOG_LEVEL = "INFO"

# A test whose worker processes mail picks a backend they share (apps/orders/tests/mail_backends.py).
EMAIL_BACKEND = env("TEST_EMAIL_BACKEND", default="django.core.mail.backends.locmem.EmailBackend")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LANGUAGE_CODE = "zh-hans"
# RabbitMQ, as in production, in a virtual host of the suite's own (named like
# its key prefix; conftest.py creates it), so parallel runs never share a queue.
# Each test starts with its queues purged (conftest.py). TEST_CELERY_BROKER_URL=
# redis://... runs the suite on the Redis broker (a laptop without RabbitMQ).
CELERY_BROKER_URL = env(
    "TEST_CELERY_BROKER_URL", default=f"amqp://guest:guest@127.0.0.1:5672/{quote(REDIS_KEY_PREFIX, safe='')}"
)
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(
    url=CELERY_BROKER_URL, key_prefix=REDIS_KEY_PREFIX, visibility_timeout=BROKER_VISIBILITY_TIMEOUT
)
CELERY_TASK_QUEUES = broker_queues(url=CELERY_BROKER_URL, names=TASK_QUEUE_NAMES)
# The storefront tests see uploaded images through Django (the nginx test serves them from disk).
SERVE_MEDIA = True
