"""Names of the Redis keys of the stock gate.

Every key of one product carries the hash tag {p:<id>}, so a script touching
several keys of one product runs unchanged on Redis Cluster; every key starts
with REDIS_KEY_PREFIX so environments can share a server.
"""

from django.conf import settings


def _product(product_id: int, name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:{{p:{product_id}}}:{name}"


def stock_key(product_id: int) -> str:
    """Keys still free to reserve. Missing means "not warmed": checkout pauses."""
    return _product(product_id, "stock")


def rules_key(product_id: int) -> str:
    """Hash of the sale rules the checkout script enforces (window, limits, price)."""
    return _product(product_id, "rules")


def buyers_key(product_id: int) -> str:
    """Hash: buyer identity hash -> quantity held or bought (the per-buyer limit)."""
    return _product(product_id, "buyers")


def unpaid_key(product_id: int) -> str:
    """Hash: buyer identity hash -> unpaid reservations held (the hostage cap)."""
    return _product(product_id, "unpaid")


def bucket_key(product_id: int, endpoint: str) -> str:
    """Token bucket capping an endpoint's rate for this product."""
    return _product(product_id, f"bucket:{endpoint}")


def reservations_key(product_id: int) -> str:
    """Hash: order number -> reservation record, until the order ends or expires."""
    return _product(product_id, "reservations")


def held_key(product_id: int) -> str:
    """Hash: order number -> {"buyers", "quantity"} of orders that ended
    without keys (needs attention) and still count towards their buyers'
    limits; a refund or a retry takes its entry, so each acts once."""
    return _product(product_id, "held")


def persist_queue_key(product_id: int) -> str:
    """List of reservation records waiting to become database orders."""
    return _product(product_id, "persist")


def persist_requested_key(product_id: int) -> str:
    """Set while a persist task for this product waits in the queue: later
    checkouts publish none (apps.orders.services.persistence), until the task
    clears it as it starts. It expires, so a task lost with its broker, or a
    publish that failed, delays the next one by at most
    PERSIST_REQUEST_TTL_SECONDS (beat drains meanwhile)."""
    return _product(product_id, "persist:requested")


def idempotency_key(product_id: int, digest: str) -> str:
    return _product(product_id, f"idem:{digest}")


def warmed_products_key() -> str:
    """Set of product ids whose stock has been warmed (the persist worker's list)."""
    return f"{settings.REDIS_KEY_PREFIX}:stock:warmed"


def overloaded_key() -> str:
    """ "1" while the workers' backlog pauses checkout store-wide (apps.stock.overload)."""
    return f"{settings.REDIS_KEY_PREFIX}:stock:overloaded"


def backlog_ratio_key() -> str:
    """The workers' backlog as a fraction of its limit (the larger of the two),
    written with the overload decision: the order poll asks clients to wait
    longer as it grows (apps.orders.poll)."""
    return f"{settings.REDIS_KEY_PREFIX}:stock:backlog_ratio"


def fulfilment_requested_key() -> str:
    """Set while a fulfilment task waits in the queue: later payments publish
    none (apps.orders.services.fulfilment), until the task clears it as it starts."""
    return f"{settings.REDIS_KEY_PREFIX}:fulfil:requested"


def mail_claim_key(order_id: int) -> str:
    """An order's delivery mail: a worker's lease token while it sends the mail,
    then "sent" (apps/orders/mail.py). One key per order, so no hash tag."""
    return f"{settings.REDIS_KEY_PREFIX}:mail:{order_id}"


def mail_queued_key(order_id: int) -> str:
    """Set while a re-drive or a lone retry of an order's mail waits in the
    broker, so reconciliation does not queue it again meanwhile."""
    return f"{settings.REDIS_KEY_PREFIX}:mail:{order_id}:queued"


def redis_run_id_key() -> str:
    """The Redis server's run id when the gates were last known good: a server
    that restarted with its data (AOF) or a promoted replica has another id."""
    return f"{settings.REDIS_KEY_PREFIX}:stock:redis-run-id"


def redis_run_id_marker_key(marker: int) -> str:
    """On a Redis Cluster, one of these per master, its tag chosen so that
    master owns its slot (apps.stock.services.stock_redis_restarted): the
    master's run id when the gates were last known good. It lives on the
    master it describes, so it is replicated and persisted with that
    master's data and compared with whatever server serves those slots now."""
    return f"{settings.REDIS_KEY_PREFIX}:{{run:{marker}}}:stock:redis-run-id"


def strikes_key(product_id: int) -> str:
    """Hash: client field (hashed IP or device) -> "count:first_seen_ms" of
    suspicious checkout attempts on this product (the captcha's soft threshold)."""
    return _product(product_id, "strikes")


# A coupon's use counters carry their own hash tag, {c:<id>}: a coupon may
# cover many products, so its counters cannot share each product's slot. The
# coupon scripts touch only these keys; checkout.lua only the product's
# (docs/architecture.md, "Coupons").
def _coupon(coupon_id: int, name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:{{c:{coupon_id}}}:{name}"


def coupon_uses_key(coupon_id: int) -> str:
    """Uses taken (held by live reservations, or by orders that count). Missing
    means "not counted yet": the next take rebuilds it from MariaDB."""
    return _coupon(coupon_id, "uses")


def coupon_buyers_key(coupon_id: int) -> str:
    """Hash: buyer identity (the normalised email's) -> uses taken."""
    return _coupon(coupon_id, "buyers")


def coupon_claims_key(coupon_id: int) -> str:
    """Hash: order number -> {"buyer", "at" (ms)}: which order holds each use,
    so a use is given back once (expiry, cancel, refund, a refused checkout)."""
    return _coupon(coupon_id, "claims")


def coupon_idempotency_key(coupon_id: int, product_id: int, digest: str) -> str:
    """The order number a checkout's idempotency key (its digest; the product
    is the other half of its scope) took this coupon's use for, so a double
    click or a retry acts for that order."""
    return _coupon(coupon_id, f"idem:{product_id}:{digest}")
