"""Sessions in the Redis cache that survive a Redis outage (SESSION_ENGINE).

Django's cache session store turns an unreachable cache into a 500 on any
request that writes its session, and after a silent cache failure it retries a
new session key 10,000 times. Here a Redis error loses the session write
instead (logged): the buyer's page still renders, checkout answers
sale_paused on its own, and the session works again once Redis is back.
"""

import logging

from django.contrib.sessions.backends.cache import SessionStore as CacheSessionStore
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


class SessionStore(CacheSessionStore):
    # load() already treats any cache error as "no session".

    def exists(self, session_key):
        try:
            return super().exists(session_key)
        except RedisError:
            return False  # a fresh random key, unchecked: the write below is lost anyway

    def save(self, must_create=False):
        try:
            super().save(must_create=must_create)
        except RedisError:
            logger.warning("session not saved: Redis unreachable")

    def delete(self, session_key=None):
        try:
            super().delete(session_key)
        except RedisError:
            logger.warning("session not deleted: Redis unreachable")
