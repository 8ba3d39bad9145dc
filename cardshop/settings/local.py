"""Developer machine: debug on, everything else from base defaults."""

from cardshop.env import env

from .base import *  # noqa: F403

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# No nginx in front here: Django serves the uploaded product images and logo.
SERVE_MEDIA = env.bool("SERVE_MEDIA", default=True)
