from datetime import timedelta

import pytest
from django.utils import timezone

from apps.orders.models import Order
from apps.orders.services import expiry, fulfilment, persistence
from apps.orders.services.reconcile import reconcile_run
from apps.orders.tests.delivery_support import product_manual
from apps.orders.tests.support import product_with_keys

from .sale import checkout, pay, samples, value


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples(response.content.decode())


def test_metrics_are_refused_to_other_networks(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.7").status_code == 403


def test_the_token_opens_metrics_from_anywhere_and_a_wrong_one_does_not(client, settings, db):
    settings.METRICS_TOKEN = "scrape-me-7f3a"
    outside = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me-7f3a", **outside).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me", **outside).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="scrape-me-7f3a", **outside).status_code == 403


def test_an_allowed_network_is_read_through_the_trusted_proxy(client, settings, db):
    """Behind our proxy the address the proxy saw counts, so a public request
    relayed by a local nginx is refused, and a listed network is let in."""
    settings.TRUSTED_PROXY_IP_HEADER = "X-Forwarded-For"
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_small_sale_moves_each_counter_by_what_happened(client, settings):
    settings.RATELIMIT_ENABLE = False
    product = product_with_keys(keys=3, per_buyer_limit=1)
    before = scrape(client)

    accepted = [checkout(client, sku=product.sku, email=f"b{i}@example.com") for i in range(2)]
    assert checkout(client, sku=product.sku, email="b0@example.com").json()["error"] == "limit_exceeded"
    accepted.append(checkout(client, sku=product.sku, email="b2@example.com"))
    assert [r.status_code for r in accepted] == [202, 202, 202]
    assert checkout(client, sku=product.sku, email="late@example.com").json()["error"] == "sold_out"
    assert checkout(client, sku=product.sku, email="not-an-email").json()["error"] == "invalid"
    persistence.order_persist_queued(product_ids=[product.id])
    first, second, third = (Order.objects.get(order_no=r.json()["order_no"]) for r in accepted)

    assert pay(client, order=first).status_code == 200
    assert pay(client, order=second).status_code == 200
    assert pay(client, order=second).status_code == 200  # the provider repeats itself
    assert pay(client, order=third, signature="forged").status_code == 400
    mid = scrape(client)
    assert value(mid, "cardshop_fulfil_backlog") == 2
    assert value(mid, "cardshop_orders", status="paid") == 2
    assert value(mid, "cardshop_orders", status="awaiting_payment") == 1
    assert value(mid, "cardshop_paid_undelivered_oldest_seconds") >= 0
    assert value(mid, "cardshop_stock_remaining", sku=product.sku) == 0
    assert value(mid, "cardshop_reservations_outstanding", sku=product.sku) == 3

    fulfilment.order_fulfil(order_id=first.id)  # delivers both paid orders in one batch
    Order.objects.filter(id=third.id).update(reserved_until=timezone.now() - timedelta(seconds=1))
    assert expiry.order_expire_due() == 1
    reconcile_run(drift_settle_seconds=0)
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cardshop_checkouts_total", outcome="accepted") == 3
    assert moved("cardshop_checkouts_total", outcome="sold_out") == 1
    assert moved("cardshop_checkouts_total", outcome="limit_exceeded") == 1
    assert moved("cardshop_checkouts_total", outcome="invalid") == 1
    assert moved("cardshop_checkout_duration_seconds_count") == 6
    assert moved("cardshop_payment_notifications_total", provider="sandbox", outcome="accepted") == 3
    assert moved("cardshop_payment_notifications_total", provider="sandbox", outcome="invalid_signature") == 1
    assert moved("cardshop_order_transitions_total", status="delivered") == 2
    assert moved("cardshop_order_transitions_total", status="expired") == 1
    assert moved("cardshop_paid_to_delivered_seconds_count") == 2
    assert value(after, "cardshop_reconcile_last_run_timestamp_seconds") > 0
    # The expired order's key went back; the delivered ones left the gate.
    assert value(after, "cardshop_stock_remaining", sku=product.sku) == 1
    assert value(after, "cardshop_reservations_outstanding", sku=product.sku) == 0
    assert value(after, "cardshop_fulfil_backlog") == 0
    assert value(after, "cardshop_paid_undelivered_oldest_seconds") == 0
    assert value(after, "cardshop_breaker_state", breaker="payment:sandbox") == 0
    assert value(after, "cardshop_metrics_source_up", source="redis") == 1
    assert value(after, "cardshop_metrics_source_up", source="database") == 1
    # django-prometheus: the request latency the p95 alert reads, by view.
    assert (
        value(
            after, "django_http_requests_latency_seconds_by_view_method_count", view="api:order-create", method="POST"
        )
        >= 6
    )


@pytest.mark.django_db(transaction=True)
def test_per_client_rate_limit_refusals_count_as_rate_limited_checkouts(client, settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMIT_CHECKOUT_IP = "2/m"
    product = product_with_keys(keys=5)
    before = scrape(client)
    codes = [checkout(client, sku=product.sku, email=f"r{i}@example.com").status_code for i in range(4)]
    assert codes == [202, 202, 429, 429]
    after = scrape(client)
    key = ("cardshop_checkouts_total", (("outcome", "rate_limited"),))
    assert after[key] - before.get(key, 0) == 2
    limit_key = ("cardshop_rate_limit_refusals_total", (("limit", "checkout-ip"),))
    assert after[limit_key] - before.get(limit_key, 0) == 2


@pytest.mark.django_db
def test_reconcile_drift_fixes_are_counted(settings):
    from apps.core import metrics
    from apps.orders.services.reconcile import ReconcileReport

    drift_before = metrics.RECONCILE_FIXES.labels("drift")._value.get()
    keys_before = metrics.RECONCILE_DRIFT_KEYS._value.get()
    metrics.reconcile_reported(ReconcileReport(drift_fixed={"A": 3, "B": -2}, released=["x"]))
    assert metrics.RECONCILE_FIXES.labels("drift")._value.get() - drift_before == 2
    assert metrics.RECONCILE_DRIFT_KEYS._value.get() - keys_before == 5


def test_the_worker_endpoint_applies_the_same_access_rule(settings):
    import urllib.error
    import urllib.request

    from apps.monitoring.exporter import worker_exporter_start

    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.METRICS_TOKEN = "worker-scrape-1"
    server = worker_exporter_start(address="127.0.0.1", port=0)
    assert server is not None
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 403
        request = urllib.request.Request(url, headers={"Authorization": "Bearer worker-scrape-1"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert b"cardshop_checkouts_total" in response.read()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db(transaction=True)
def test_manual_deliveries_have_their_own_gauges_and_stay_out_of_paid_undelivered(client, settings, monkeypatch):
    """A manual order waits for a person: it is not "paid, keys late", and it
    counts as overdue only past MANUAL_DELIVERY_SLA_HOURS."""
    from apps.orders.tests.delivery_support import product_manual
    from apps.orders.tests.support import paid_orders

    monkeypatch.setattr("apps.orders.tasks.fulfil_order_task.delay", lambda order_id=None: None)
    settings.MANUAL_DELIVERY_SLA_HOURS = 2
    product = product_manual(stock=5, per_buyer_limit=2)
    late, fresh = paid_orders(product, 2)
    Order.objects.filter(id=late.id).update(paid_at=timezone.now() - timedelta(hours=3))

    now = scrape(client)
    assert value(now, "cardshop_paid_undelivered_oldest_seconds") == 0
    assert value(now, "cardshop_manual_delivery_waiting_orders") == 2
    assert value(now, "cardshop_manual_delivery_overdue_orders") == 1


@pytest.mark.django_db(transaction=True)
def test_manual_orders_waiting_for_the_merchant_are_not_in_the_fulfilment_backlog(client, settings):
    settings.RATELIMIT_ENABLE = False
    manual = product_manual(stock=5, per_buyer_limit=5)
    pool = product_with_keys(keys=5, per_buyer_limit=5)
    for i in range(3):
        assert checkout(client, sku=manual.sku, email=f"m{i}@example.com").status_code == 202
    assert checkout(client, sku=pool.sku, email="k@example.com").status_code == 202
    persistence.order_persist_queued()
    Order.objects.update(status=Order.Status.PAID, paid_at=timezone.now())
    page = scrape(client)
    assert value(page, "cardshop_fulfil_backlog") == 1
    assert value(page, "cardshop_orders", status="paid") == 4
    assert value(page, "cardshop_manual_delivery_waiting_orders") == 3
