"""Developer machine: debug on, everything else from base defaults."""

from cardshop.env import env

from .base import *  # noqa: F403

DEBUG = env.bool("DJANGO_DEBUG", default=True)
