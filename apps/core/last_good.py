"""The last good copy of cached values, kept in this process, for when the
shared cache (Redis) cannot be reached.

Without it, every page view during a Redis outage would read MariaDB: a
refresh storm moved from Redis onto the record. With it, each web process
reads a value from the database at most once per `max_age` seconds while
Redis is down, and serves that copy (stale is fine: checkout is paused anyway).
"""

import threading
import time
from collections import OrderedDict


class LastGood:
    """A small, thread-safe, bounded map of values with their age. The oldest
    entries go first once `max_entries` is reached, so a crawl of unknown
    SKUs cannot grow it without bound."""

    def __init__(self, *, max_entries: int = 1000):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, key: str, value) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def recall(self, key: str, *, max_age: float):
        """The value remembered under key if it is at most max_age seconds old, else None."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] > max_age:
            return None
        return entry[1]
