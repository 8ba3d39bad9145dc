"""Developer machine: debug on, everything else from base defaults."""
from .base import *  # noqa: F403
from cardshop.env import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
