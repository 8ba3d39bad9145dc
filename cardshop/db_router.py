"""Primary for every write; the replica for reads that tolerate a few seconds
of staleness (docs/database-replica.md).

What goes to the replica: catalog reads (this router), and the order lookups
that apps.orders.selectors sends through `replica_or_primary()` (settled
orders only). Only in a web request that may read stale data: a safe request
(GET, HEAD, …) from a browser that has not written in the last
REPLICA_READ_YOUR_WRITES_SECONDS (apps.core.middleware). Everything else —
a request that writes, the writer's next requests, Celery tasks, management
commands, shells — reads the primary, and so does everyone while the replica
lags past REPLICA_MAX_LAG_SECONDS or cannot be reached (apps.core.replica).

Code that must see a write it just made inside a replica-reading request
wraps the read in `primary_reads()`; a view that writes on a safe method
(the payment webhook: epay notifies by GET) is decorated with it.

With DATABASE_REPLICA_URL unset the two aliases are one server, and catalog
reads keep the `replica` alias (a mirror in tests) everywhere."""

import contextvars
from contextlib import contextmanager

from django.conf import settings

from apps.core import metrics
from apps.core.replica import replica_health

# Apps whose reads may be served slightly stale by a replica.
REPLICA_READ_APPS = frozenset({"catalog"})

_pinned_to_primary = contextvars.ContextVar("pinned_to_primary", default=False)
# Set by the middleware for the requests that may read the replica.
_replica_allowed = contextvars.ContextVar("replica_allowed", default=False)


@contextmanager
def primary_reads():
    token = _pinned_to_primary.set(True)
    try:
        yield
    finally:
        _pinned_to_primary.reset(token)


@contextmanager
def replica_reads_allowed():
    """The block may read the replica (a safe request of a reader who has not
    written lately). `primary_reads()` inside it still wins."""
    token = _replica_allowed.set(True)
    try:
        yield
    finally:
        _replica_allowed.reset(token)


def replica_or_primary() -> str:
    """The alias for a read that tolerates staleness, here and now: "replica"
    when the replica may serve it and is fit, else "default". Costs no query
    (the replica's fitness is a verdict kept in memory)."""
    if _pinned_to_primary.get():
        return "default"
    if not settings.REPLICA_ENABLED:
        return "replica"  # the same server: its mirror in tests
    if not _replica_allowed.get():
        return "default"
    if replica_health.usable():
        return "replica"
    metrics.replica_read_fell_back()
    return "default"


# Where a read that tolerates staleness goes (stale_read_route()).
ROUTE_REPLICA, ROUTE_PINNED, ROUTE_PRIMARY = "replica", "pinned", "primary"


def stale_read_route() -> str:
    """Where a read that tolerates staleness goes here and now, for a caller
    that shares what it read (a cache) and must know whether it may be stale:

    - ROUTE_REPLICA: a real replica, which may lag;
    - ROUTE_PINNED: the primary, for this request only (it writes, or its
      reader wrote lately, or it is staff's): fresh, but possibly fresher than
      what everyone else is shown;
    - ROUTE_PRIMARY: the primary, as everyone now reads it (no replica
      configured, the replica unfit — a fallback, counted — or no web
      request): never stale.

    Costs no query. A caller on ROUTE_PRIMARY wraps its read in
    `primary_reads()`, so that a replica found fit meanwhile does not serve
    it."""
    if not settings.REPLICA_ENABLED:
        return ROUTE_PRIMARY
    if _pinned_to_primary.get():
        return ROUTE_PINNED
    return ROUTE_REPLICA if replica_or_primary() == "replica" else ROUTE_PRIMARY


class PrimaryReplicaRouter:
    def db_for_read(self, model, **hints):
        if model._meta.app_label in REPLICA_READ_APPS:
            return replica_or_primary()
        return "default"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        # Both aliases hold the same data; a replica row may point at a primary row.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default"
