"""The shop's state, read when Prometheus scrapes the web process.

Gauges of "how things stand now" come from Redis (the gate) and MariaDB (the
record) at scrape time rather than from counters kept in each process: every
web process answers the same figures, a restart loses nothing, and nothing
has to be kept in step. Each source is read in a bounded way (the warmed
products, at most METRICS_MAX_PRODUCTS of them, one Redis pipeline; one
indexed query over the orders still in flight), and a source that cannot be
read is reported as such instead of failing the whole scrape.
"""

import logging
import time

from django.conf import settings
from django.db.models import Count, Min
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError

from apps.catalog.models import Product
from apps.core.breakers import breaker_states
from apps.orders.models import Order
from apps.orders.selectors import manual_delivery_overdue_cutoff, orders_awaiting_manual_delivery, paid_orders_to_fulfil
from apps.stock.redis import gate_commands_per_master, gate_masters_up
from apps.stock.redis_keys import persist_queue_key, reservations_key, stock_key
from apps.stock.selectors import stock_warmed_product_ids

logger = logging.getLogger(__name__)

# Orders still moving; the ended ones (delivered, expired, refunded) only grow
# and are counted by cardshop_order_transitions_total instead.
OPEN_STATUSES = (
    Order.Status.AWAITING_PAYMENT,
    Order.Status.PAID,
    Order.Status.NEEDS_ATTENTION,
    Order.Status.REFUND_PENDING,
)
BREAKER_STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}


class ShopStateCollector:
    def collect(self):
        up = GaugeMetricFamily(
            "cardshop_metrics_source_up",
            "1 when the scrape could read this source (redis, database).",
            labels=["source"],
        )
        redis_ok = True
        try:
            yield self._gate_masters()
        except RedisError as exc:  # no gate client at all: every master is down
            logger.warning("metrics: gate Redis unreachable: %r", exc)
        try:
            yield from self._gate()
        except RedisError as exc:
            logger.warning("metrics: Redis unreadable: %r", exc)
            redis_ok = False
        try:
            yield from self._breakers()
        except RedisError:
            redis_ok = False
        up.add_metric(["redis"], 1 if redis_ok else 0)
        try:
            yield from self._orders()
            up.add_metric(["database"], 1)
        except Exception as exc:  # any database error: say so, keep the rest of the scrape
            logger.warning("metrics: database unreadable: %r", exc)
            up.add_metric(["database"], 0)
        yield up

    def _gate_masters(self):
        family = GaugeMetricFamily(
            "cardshop_gate_redis_master_up",
            "1 when this gate Redis master (a single gate Redis: that one) answers PING, per node.",
            labels=["node"],
        )
        for node, up in gate_masters_up().items():
            family.add_metric([node], 1 if up else 0)
        return family

    def _gate(self):
        product_ids = stock_warmed_product_ids()[: settings.METRICS_MAX_PRODUCTS]
        skus = dict(Product.objects.filter(id__in=product_ids).values_list("id", "sku"))
        # Per gate master: a dead master leaves out only its own products.
        replies = gate_commands_per_master(
            [
                command
                for product_id in product_ids
                for command in (
                    ("GET", stock_key(product_id)),
                    ("HLEN", reservations_key(product_id)),
                    ("LLEN", persist_queue_key(product_id)),
                )
            ]
        )
        remaining = GaugeMetricFamily(
            "cardshop_stock_remaining",
            "Keys still free to reserve, per warmed product (the Redis counter).",
            labels=["sku"],
        )
        reservations = GaugeMetricFamily(
            "cardshop_reservations_outstanding",
            "Reservations held in the gate (unpaid, or paid and awaiting keys), per product.",
            labels=["sku"],
        )
        backlog = GaugeMetricFamily(
            "cardshop_persist_backlog",
            "Reservations queued in Redis, not yet written to MariaDB, per product.",
            labels=["sku"],
        )
        for i, product_id in enumerate(product_ids):
            sku = skus.get(product_id)
            stock, held, queued = replies[3 * i : 3 * i + 3]
            if sku is None:
                continue  # a product deleted since it was warmed
            if any(isinstance(reply, RedisError) for reply in (stock, held, queued)):
                continue  # its master did not answer: unknown, not zero
            if stock is not None:
                remaining.add_metric([sku], max(int(stock), 0))
            reservations.add_metric([sku], int(held))
            backlog.add_metric([sku], int(queued))
        yield remaining
        yield reservations
        yield backlog

    def _breakers(self):
        family = GaugeMetricFamily(
            "cardshop_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", labels=["breaker"]
        )
        for name, state in breaker_states().items():
            family.add_metric([name], BREAKER_STATE_VALUES.get(state, 2))
        yield family

    def _orders(self):
        rows = (
            Order.objects.using("default")
            .filter(status__in=OPEN_STATUSES)
            .values("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        counts = {row["status"]: row["n"] for row in rows}
        by_status = GaugeMetricFamily(
            "cardshop_orders",
            "Orders in each open state (awaiting_payment, paid, needs_attention, refund_pending).",
            labels=["status"],
        )
        for status in OPEN_STATUSES:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        # Orders a merchant delivers by hand wait for a person, not a worker:
        # they have their own gauges and SLA (MANUAL_DELIVERY_SLA_HOURS).
        to_fulfil = paid_orders_to_fulfil().using("default")
        yield GaugeMetricFamily(
            "cardshop_fulfil_backlog",
            "Paid orders waiting for fulfilment (manual deliveries aside).",
            value=to_fulfil.count(),
        )
        oldest = to_fulfil.aggregate(m=Min("paid_at"))["m"]
        yield GaugeMetricFamily(
            "cardshop_paid_undelivered_oldest_seconds",
            "Age of the oldest paid order still without its keys (manual deliveries aside); 0 when there is none.",
            value=max(time.time() - oldest.timestamp(), 0.0) if oldest else 0.0,
        )
        waiting = orders_awaiting_manual_delivery().using("default").order_by()
        yield GaugeMetricFamily(
            "cardshop_manual_delivery_waiting_orders",
            "Paid orders of manual-delivery products waiting for the merchant.",
            value=waiting.count(),
        )
        yield GaugeMetricFamily(
            "cardshop_manual_delivery_overdue_orders",
            "Of those, the ones waiting longer than MANUAL_DELIVERY_SLA_HOURS.",
            value=waiting.filter(paid_at__lt=manual_delivery_overdue_cutoff()).count(),
        )
