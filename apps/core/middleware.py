import functools

from django.conf import settings
from django.urls import reverse

from cardshop.db_router import primary_reads, replica_reads_allowed

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Read-your-writes: a browser that sent a request that may write carries this
# signed, timestamped mark for REPLICA_READ_YOUR_WRITES_SECONDS and reads
# from the primary meanwhile (docs/database-replica.md).
WROTE_COOKIE = "cardshop_wrote"
WROTE_SALT = "cardshop.read-your-writes"


class PrimaryReadsForWritesMiddleware:
    """A request that may write reads from the primary, so it sees its own
    writes; so do the next requests of the same browser for
    REPLICA_READ_YOUR_WRITES_SECONDS, so that a merchant who saved a product,
    or a buyer who just paid, does not read a replica that has not caught up.
    The admin's pages read the primary too. Only the other safe requests may
    read the replica (cardshop.db_router)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method not in SAFE_METHODS:
            with primary_reads():
                response = self.get_response(request)
            if settings.REPLICA_ENABLED:
                _wrote_mark_set(response)
            return response
        if settings.REPLICA_ENABLED and (_wrote_recently(request) or _is_admin(request)):
            with primary_reads():
                return self.get_response(request)
        with replica_reads_allowed():
            return self.get_response(request)


@functools.cache
def _admin_prefix() -> str:
    return reverse("admin:index")


def _is_admin(request) -> bool:
    """Staff pages read the primary: a change form built from a lagging
    replica and saved would write the old values back."""
    return request.path.startswith(_admin_prefix())


def _wrote_recently(request) -> bool:
    # A forged, altered or expired mark reads as none (the signature carries its time).
    mark = request.get_signed_cookie(
        WROTE_COOKIE, default=None, salt=WROTE_SALT, max_age=settings.REPLICA_READ_YOUR_WRITES_SECONDS
    )
    return mark is not None


def _wrote_mark_set(response) -> None:
    response.set_signed_cookie(
        WROTE_COOKIE,
        "1",
        salt=WROTE_SALT,
        max_age=settings.REPLICA_READ_YOUR_WRITES_SECONDS,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
