"""The volume phase's two tools (bench/volume.py), small: the history filler
writes rows the models' constraints accept, and every hot query of the
purchase path reads through an index, never a full scan (EXPLAIN)."""

import pytest

from apps.cardkeys.models import CardKey
from apps.catalog.models import Product
from apps.orders.models import Order
from bench.volume import hot_queries_explain, volume_fill

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def history():
    # transaction=True: the filler's ANALYZE TABLE commits, as it would in the benchmark.
    return volume_fill(orders=3000, keys=8000, products=5, chunk=1000)


def test_history_fill_writes_the_asked_rows_with_the_models_invariants(history):
    assert history["orders"] == Order.objects.count() == 3000
    assert history["keys"] == CardKey.objects.count() == 8000
    statuses = set(Order.objects.values_list("status", flat=True).distinct())
    assert statuses == {"delivered", "expired", "refunded", "cancelled"}
    # One key per unit of every delivered or refunded order, revoked for the refunded.
    for status, key_status in (("delivered", "sold"), ("refunded", "revoked")):
        units = sum(Order.objects.filter(status=status).values_list("quantity", flat=True))
        assert CardKey.objects.filter(order__status=status, status=key_status).count() == units
    assert (
        CardKey.objects.filter(status="available", order__isnull=True).count() == 8000 - history["keys_sold_or_revoked"]
    )
    assert Order.objects.values("order_no").distinct().count() == 3000
    assert CardKey.objects.values("fingerprint").distinct().count() == 8000
    # The secrets are the app's own Fernet tokens: they decrypt.
    assert CardKey.objects.first().secret.startswith("HIST-")


def test_every_hot_query_reads_through_an_index(history):
    product = Product.objects.get(sku="HIST-000")
    order = Order.objects.filter(status=Order.Status.DELIVERED).order_by("id").first()
    plans = hot_queries_explain(product_id=product.id, order_no=order.order_no, order_id=order.id)
    assert {"persist_existing_orders", "key_claim", "order_lookup", "fulfil_batch_lock"} <= plans.keys()
    scans = {name: plan for name, plan in plans.items() if not plan["uses_index"]}
    assert not scans, scans
    assert plans["key_claim"]["tables"][0]["key"] == "cardkey_claim_idx", plans["key_claim"]
    assert plans["order_lookup"]["tables"][0]["type"] == "const", plans["order_lookup"]
