"""Settings of the benchmark's server and workers: the app's own settings, plus
a URLconf that mounts the naive checkout beside the real one, so both run in
the same gunicorn with the same middleware. Never used by the app itself."""

from cardshop.settings.base import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
