"""The promises under real concurrency: real HTTP against a live server, real
MariaDB transactions, real Redis, real Celery worker processes."""

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.services import checkout, payment, persistence
from apps.orders.tasks import persist_reservations_task
from apps.payments.models import PaymentEvent
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import persist_requested_key, stock_key
from apps.stock.warmup import stock_warm
from testing.processes import wait_until

from .processes import CeleryWorker
from .support import persist_task_marked_waiting, product_with_keys, redis_lose_product

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def post_json(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def checkout_crowd(base_url: str, sku: str, emails: list[str], threads: int = 48) -> list[tuple[int, dict]]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(
            pool.map(lambda e: post_json(f"{base_url}/api/v1/orders", {"sku": sku, "email": e, "quantity": 1}), emails)
        )


def pay_all_concurrently(order_nos: list[str], threads: int = 16) -> None:
    def pay(order_no):
        order = Order.objects.get(order_no=order_no)
        try:
            payment.order_mark_paid(
                order_no=order_no,
                provider="sandbox",
                event_id=f"evt-{order_no}",
                amount=order.amount,
                currency=order.currency,
            )
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(pay, order_nos))


def assert_each_key_in_one_order(product, orders):
    sold = list(CardKey.objects.filter(product=product, status="sold").values_list("id", "order_id"))
    assert len(sold) == len({key_id for key_id, _ in sold}), "a key row appears twice"
    per_order = Counter(order_id for _, order_id in sold)
    for order in orders:
        assert per_order[order.id] == order.quantity, f"{order.order_no} has {per_order[order.id]} keys"
    # Distinct secrets too, not just distinct rows.
    secrets_ = [k.secret for k in CardKey.objects.filter(product=product, status="sold")]
    assert len(secrets_) == len(set(secrets_))


def test_2000_buyers_300_keys_exactly_300_delivered(app_server, celery_worker_process):
    product = product_with_keys(keys=300, per_buyer_limit=1)
    emails = [f"buyer{i}@example.com" for i in range(2000)]

    answers = checkout_crowd(app_server.url, product.sku, emails)

    codes = Counter(status for status, _ in answers)
    errors = Counter(body.get("error") for status, body in answers if status != 202)
    assert codes == {202: 300, 409: 1700}, codes
    assert errors == {"sold_out": 1700}, errors
    accepted = [body["order_no"] for status, body in answers if status == 202]
    assert len(set(accepted)) == 300

    persist_reservations_task.delay()
    wait_until(lambda: Order.objects.filter(product=product).count() == 300, timeout=60, message="persistence")
    pay_all_concurrently(accepted)
    wait_until(
        lambda: Order.objects.filter(product=product, status="delivered").count() == 300,
        timeout=120,
        message="300 deliveries",
    )

    orders = list(Order.objects.filter(product=product))
    assert {o.status for o in orders} == {"delivered"}
    assert_each_key_in_one_order(product, orders)
    assert CardKey.objects.filter(product=product, status="available").count() == 0
    assert int(stock_redis().get(stock_key(product.id))) == 0


def test_same_webhook_ten_times_concurrently_acts_once(celery_worker_process):
    product = product_with_keys(keys=5)
    result = checkout.order_checkout(sku=product.sku, email="a@x.com", quantity=2)
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=result.order_no)
    barrier = threading.Barrier(10)

    def deliver():
        barrier.wait()
        try:
            payment.order_mark_paid(
                order_no=order.order_no,
                provider="sandbox",
                event_id="evt-once",
                amount=order.amount,
                currency=order.currency,
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    wait_until(lambda: Order.objects.get(id=order.id).status == "delivered", timeout=30, message="delivery")
    assert PaymentEvent.objects.filter(order=order).count() == 1
    assert CardKey.objects.filter(order=order).count() == 2
    assert CardKey.objects.filter(product=product, status="sold").count() == 2


def test_worker_killed_mid_fulfilment_then_every_paid_order_delivered_once():
    product = product_with_keys(keys=400, per_buyer_limit=1)
    for i in range(400):
        checkout.order_checkout(sku=product.sku, email=f"k{i}@x.com", quantity=1)
    persistence.order_persist_queued()
    order_nos = list(Order.objects.filter(product=product).values_list("order_no", flat=True))
    # One order per transaction and one process, so the kill lands mid-stream.
    worker = CeleryWorker(concurrency=1, extra_env={"FULFIL_BATCH_SIZE": "1"}).start()
    try:
        pay_all_concurrently(order_nos)
        wait_until(
            lambda: Order.objects.filter(product=product, status="delivered").count() >= 20,
            timeout=60,
            interval=0.01,
            message="the first deliveries",
        )
        worker.kill()
        delivered_at_kill = Order.objects.filter(product=product, status="delivered").count()
        assert delivered_at_kill < 400, "the worker finished before it could be killed"
        worker = CeleryWorker(concurrency=2).start()
        wait_until(
            lambda: Order.objects.filter(product=product, status="delivered").count() == 400,
            timeout=180,
            message="every paid order delivered after the restart",
        )
    finally:
        worker.stop()
    orders = list(Order.objects.filter(product=product))
    assert_each_key_in_one_order(product, orders)
    assert CardKey.objects.filter(product=product, status="available").count() == 0


def test_redis_lost_mid_sale_pauses_rebuilds_and_never_oversells(app_server, celery_worker_process):
    product = product_with_keys(keys=150, per_buyer_limit=1)
    first = checkout_crowd(app_server.url, product.sku, [f"a{i}@x.com" for i in range(100)])
    assert Counter(s for s, _ in first) == {202: 100}
    # The first crowd's last persist task has started (it clears its mark as it starts) and ended.
    wait_until(lambda: not stock_redis().exists(persist_requested_key(product.id)), timeout=10)
    time.sleep(0.5)
    persistence.order_persist_queued()
    # 20 more reservations that never reach MariaDB before Redis loses everything
    # (a persist task is marked waiting, so none is published for them).
    persist_task_marked_waiting(product)
    lost = checkout_crowd(app_server.url, product.sku, [f"lost{i}@x.com" for i in range(20)])
    assert Counter(s for s, _ in lost) == {202: 20}
    client = stock_redis()
    redis_lose_product(product)

    paused = checkout_crowd(app_server.url, product.sku, [f"p{i}@x.com" for i in range(10)])
    assert {(s, b["error"]) for s, b in paused} == {(503, "sale_paused")}

    assert stock_warm(product=product) == (True, 50)  # 150 keys - 100 persisted reservations
    rest = checkout_crowd(app_server.url, product.sku, [f"b{i}@x.com" for i in range(200)])
    assert Counter(s for s, _ in rest) == {202: 50, 409: 150}
    persistence.order_persist_queued()

    # The lost reservations never became orders, so they can never be paid.
    lost_nos = [b["order_no"] for _, b in lost]
    assert not Order.objects.filter(order_no__in=lost_nos).exists()
    payable = list(Order.objects.filter(product=product).values_list("order_no", flat=True))
    assert len(payable) == 150
    pay_all_concurrently(payable)
    wait_until(
        lambda: Order.objects.filter(product=product, status="delivered").count() == 150,
        timeout=120,
        message="every paid order delivered",
    )
    assert not Order.objects.filter(status__in=["paid", "needs_attention"]).exists()
    assert_each_key_in_one_order(product, list(Order.objects.filter(product=product)))
    assert int(client.get(stock_key(product.id))) == 0


def test_same_idempotency_key_concurrently_makes_one_order(app_server):
    product = product_with_keys(keys=20, per_buyer_limit=20)
    barrier = threading.Barrier(20)

    def send(_):
        barrier.wait()
        return post_json(
            f"{app_server.url}/api/v1/orders",
            {"sku": product.sku, "email": "same@x.com", "quantity": 1},
            headers={"Idempotency-Key": "double-click-1"},
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))
    assert {status for status, _ in answers} == {202}
    assert len({body["order_no"] for _, body in answers}) == 1
    assert int(stock_redis().get(stock_key(product.id))) == 19
    persistence.order_persist_queued()
    assert Order.objects.filter(product=product).count() == 1
