"""Primary for every write; the replica for catalog reads.

A request that writes pins its reads to the primary (see
apps.core.middleware.PrimaryReadsForWritesMiddleware), and code that must see a
write it just made wraps the read in `primary_reads()`.
"""

import contextvars
from contextlib import contextmanager

# Apps whose reads may be served slightly stale by a replica.
REPLICA_READ_APPS = frozenset({"catalog"})

_pinned_to_primary = contextvars.ContextVar("pinned_to_primary", default=False)


@contextmanager
def primary_reads():
    token = _pinned_to_primary.set(True)
    try:
        yield
    finally:
        _pinned_to_primary.reset(token)


class PrimaryReplicaRouter:
    def db_for_read(self, model, **hints):
        if model._meta.app_label in REPLICA_READ_APPS and not _pinned_to_primary.get():
            return "replica"
        return "default"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        # Both aliases hold the same data; a replica row may point at a primary row.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default"
