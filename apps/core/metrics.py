"""The shop's own Prometheus metrics, all in one place (docs/metrics.md).

Counters and histograms here are recorded where things happen, by the small
functions below; the code paths call one of them in one line. Gauges that
describe the state of the shop right now (stock left, reservations, orders by
status, backlogs, breakers) are not recorded anywhere: they are read from
Redis and MariaDB when Prometheus scrapes (apps.monitoring.collector), so
every process reports the same truth and nothing drifts.

In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set, as gunicorn and the Celery
worker run) each process writes its values to a file in that directory and
the scrape adds them up.

Label values are always from a fixed set (outcome codes, statuses, the
configured providers), never from request input, so a hostile client cannot
grow the number of series.
"""

import os
import time
from collections.abc import Iterable
from functools import wraps

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram

from apps.core.errors import ShopError

# Every process of the image is started with PROMETHEUS_MULTIPROC_DIR (also
# beat, migrate, shells); the directory must exist before a metric is made.
if _multiprocess_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_multiprocess_dir, exist_ok=True)

CHECKOUTS = Counter(
    "cardshop_checkouts",
    "Checkout requests answered, by outcome (accepted, sold_out, limit_exceeded, rate_limited, paused, invalid, ...).",
    ["outcome"],
)
CHECKOUT_SECONDS = Histogram(
    "cardshop_checkout_duration_seconds",
    "Time the checkout decision took (input checks, product lookup, the Redis script).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
RATE_LIMIT_REFUSALS = Counter(
    "cardshop_rate_limit_refusals",
    "Requests refused by a per-client rate limit, by limit.",
    ["limit"],
)
PAYMENT_NOTIFICATIONS = Counter(
    "cardshop_payment_notifications",
    "Payment provider notifications received at the webhook, by provider and outcome.",
    ["provider", "outcome"],
)
ORDERS_ENDED = Counter(
    "cardshop_order_transitions",
    "Orders that reached a state, for states reached outside a request: delivered, needs_attention, expired.",
    ["status"],
)
PAID_TO_DELIVERED_SECONDS = Histogram(
    "cardshop_paid_to_delivered_seconds",
    "Time from payment to keys delivered, per delivered order.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0),
)
RECONCILE_FIXES = Counter(
    "cardshop_reconcile_fixes",
    "What reconciliation repaired, by kind (drift counts products whose stock counter was corrected).",
    ["kind"],
)
RECONCILE_DRIFT_KEYS = Counter(
    "cardshop_reconcile_drift_keys",
    "Keys of stock drift corrected by reconciliation (absolute, summed over products).",
)
RECONCILE_ERRORS = Counter("cardshop_reconcile_errors", "Reconciliation runs that reported an error.")
# "max": several worker processes run reconciliation over time; the newest run counts.
RECONCILE_LAST_RUN = Gauge(
    "cardshop_reconcile_last_run_timestamp_seconds",
    "When reconciliation (scheduled by Celery beat) last finished, Unix time.",
    multiprocess_mode="max",
)
ORDERS_REFUNDED_AFTER_DELIVERY = Counter(
    "cardshop_orders_refunded_after_delivery",
    "Delivered orders refunded (full or partial); their keys were revoked.",
)
ORDERS_OVERPAID = Counter(
    "cardshop_orders_overpaid",
    "Extra payments for an order already paid (or refunded); each is refunded through its provider.",
)
PAYMENT_ANOMALIES = Counter(
    "cardshop_payment_anomalies",
    "Payment or refund notifications refused as anomalies, by kind (payment_mismatch, refund_mismatch, event_id_reused).",
    ["kind"],
)
CELERY_TASKS = Counter(
    "cardshop_celery_tasks",
    "Celery tasks finished in this worker, by task and state (success, failure, retry).",
    ["task", "state"],
)

# Refusal codes (apps.orders.exceptions, apps.core.errors) folded into the
# outcomes the operator reads; a code not listed here counts as itself.
_OUTCOME_OF_CODE = {
    "sale_paused": "paused",
    "page_token_invalid": "invalid",
    "too_fast": "invalid",
    "product_not_found": "not_found",
    "idempotency_key_reused": "invalid",
}
# The per-client limits that guard checkout views: a request they refuse is a
# checkout answered "rate_limited" (apps.core.ratelimits groups).
_CHECKOUT_LIMIT_GROUPS = frozenset({"checkout-ip", "checkout-buyer"})
_RECONCILE_KINDS = ("redriven", "mails_redriven", "persisted", "expired", "finished", "released", "rewarmed")
CHECKOUT_OUTCOMES = (
    "accepted",
    "sold_out",
    "limit_exceeded",
    "unpaid_limit",
    "rate_limited",
    "paused",
    "invalid",
    "not_found",
    "sale_not_started",
    "sale_ended",
    "error",
)

# Every series exists from the start at 0, so rate() and increase() see the
# first event of each kind instead of a series appearing at 1.
for _outcome in CHECKOUT_OUTCOMES:
    CHECKOUTS.labels(_outcome)
for _status in ("delivered", "needs_attention", "expired"):
    ORDERS_ENDED.labels(_status)
for _kind in (*_RECONCILE_KINDS, "drift"):
    RECONCILE_FIXES.labels(_kind)
PAYMENT_ANOMALY_KINDS = ("payment_mismatch", "refund_mismatch", "event_id_reused")
for _kind in PAYMENT_ANOMALY_KINDS:
    PAYMENT_ANOMALIES.labels(_kind)


def checkout_outcome(code: str) -> str:
    return _OUTCOME_OF_CODE.get(code, code)


def checkout_observed(func):
    """Decorate the checkout service: count each call by outcome and time it.
    A ShopError counts by its code; any other exception as "error"."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        outcome = "error"
        try:
            result = func(*args, **kwargs)
            outcome = "accepted"
            return result
        except ShopError as error:
            outcome = checkout_outcome(error.code)
            raise
        finally:
            CHECKOUT_SECONDS.observe(time.perf_counter() - started)
            CHECKOUTS.labels(outcome).inc()

    return wrapper


def rate_limit_refused(*, group: str) -> None:
    RATE_LIMIT_REFUSALS.labels(group).inc()
    if group in _CHECKOUT_LIMIT_GROUPS:
        CHECKOUTS.labels("rate_limited").inc()


def payment_notification(*, provider: str, outcome: str) -> None:
    # The provider comes from the URL: only configured names become labels.
    provider = provider if provider in settings.PAYMENT_PROVIDERS else "unknown"
    PAYMENT_NOTIFICATIONS.labels(provider, outcome).inc()


def orders_fulfilled(*, delivered: Iterable, short: Iterable) -> None:
    """After a fulfilment commit: delivered orders and those whose keys ran short."""
    for order in delivered:
        ORDERS_ENDED.labels("delivered").inc()
        if order.paid_at and order.delivered_at:
            PAID_TO_DELIVERED_SECONDS.observe(max((order.delivered_at - order.paid_at).total_seconds(), 0.0))
    for _order in short:
        ORDERS_ENDED.labels("needs_attention").inc()


def order_refunded_after_delivery() -> None:
    ORDERS_REFUNDED_AFTER_DELIVERY.inc()


def order_overpaid() -> None:
    ORDERS_OVERPAID.inc()


def payment_anomaly(*, kind: str) -> None:
    PAYMENT_ANOMALIES.labels(kind if kind in PAYMENT_ANOMALY_KINDS else "other").inc()


def orders_expired(*, count: int) -> None:
    ORDERS_ENDED.labels("expired").inc(count)


ORDER_POLLS = Counter(
    "cardshop_order_polls",
    "Order status polls (the order page's and GET /api/v1/orders/<no>), by answer: not_modified "
    "(304 from the Redis status record, no database query), full (200 from MariaDB), not_found.",
    ["answer"],
)
ORDER_POLL_ANSWERS = frozenset({"not_modified", "full", "not_found"})


def order_polled(*, answer: str) -> None:
    ORDER_POLLS.labels(answer if answer in ORDER_POLL_ANSWERS else "other").inc()


def reconcile_reported(report) -> None:
    """Record a ReconcileReport (apps.stock.reconcile)."""
    for kind in _RECONCILE_KINDS:
        value = getattr(report, kind)
        amount = value if isinstance(value, int) else len(value)
        if amount:
            RECONCILE_FIXES.labels(kind).inc(amount)
    if report.drift_fixed:
        RECONCILE_FIXES.labels("drift").inc(len(report.drift_fixed))
        RECONCILE_DRIFT_KEYS.inc(sum(abs(delta) for delta in report.drift_fixed.values()))
    if report.errors:
        RECONCILE_ERRORS.inc()
    RECONCILE_LAST_RUN.set(time.time())


def celery_task_finished(*, task: str, state: str) -> None:
    CELERY_TASKS.labels(task, state).inc()


# --- the read replica (apps.core.replica): what each process last found, and the reads it moved

# "livemin"/"livemax" over the processes alive: one process that finds the
# replica unfit is enough to say so. Labelled by the database alias so that
# no series exists in a shop without a replica (a 0 there would fire the alert).
REPLICA_IN_USE = Gauge(
    "cardshop_db_replica_in_use",
    "1 while this process sends replica-tolerant reads to the read replica, 0 while it falls back to the primary.",
    ["alias"],
    multiprocess_mode="livemin",
)
REPLICA_LAG_SECONDS = Gauge(
    "cardshop_db_replica_lag_seconds",
    "The replica's lag at this process's last check: Seconds_Behind_Master, or longer when its GTID position "
    "shows it has lacked the primary's writes longer (NaN while replication is stopped "
    "or the replica is unreachable).",
    ["alias"],
    multiprocess_mode="livemax",
)
REPLICA_CHECKS = Counter(
    "cardshop_db_replica_checks",
    "Replica checks, by verdict (ok, lagging, stopped, unreachable).",
    ["verdict"],
)
REPLICA_FALLBACK_READS = Counter(
    "cardshop_db_replica_fallback_reads",
    "Reads that would have gone to the replica and went to the primary because the replica was unfit.",
)
REPLICA_FAILOVERS = Counter(
    "cardshop_db_replica_failovers",
    "Reads routed to the replica that the primary answered because the replica failed under them: "
    "its connection attempt failed (stage=connect) or the read lost its connection (stage=query).",
    ["stage"],
)
for _stage in ("connect", "query"):
    REPLICA_FAILOVERS.labels(_stage)
REPLICA_VERDICTS = ("ok", "lagging", "stopped", "unreachable")
for _verdict in REPLICA_VERDICTS:
    REPLICA_CHECKS.labels(_verdict)


def replica_checked(*, reason: str, lag_seconds: float) -> None:
    REPLICA_CHECKS.labels(reason).inc()
    REPLICA_IN_USE.labels("replica").set(1 if reason == "ok" else 0)
    REPLICA_LAG_SECONDS.labels("replica").set(lag_seconds)


def replica_read_fell_back() -> None:
    REPLICA_FALLBACK_READS.inc()


def replica_failed_over(*, stage: str) -> None:
    REPLICA_FAILOVERS.labels(stage).inc()
