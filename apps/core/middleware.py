from cardshop.db_router import primary_reads

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class PrimaryReadsForWritesMiddleware:
    """A request that may write reads from the primary, so it sees its own writes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in SAFE_METHODS:
            return self.get_response(request)
        with primary_reads():
            return self.get_response(request)
