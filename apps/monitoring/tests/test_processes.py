"""Metrics across real processes: gunicorn workers add up theirs in one
directory, and a Celery worker serves its pool's on its own port."""

import json
import threading
import urllib.request

import pytest

from apps.orders.models import Order
from apps.orders.services import persistence
from apps.orders.tests.processes import CeleryWorker, GunicornServer
from apps.orders.tests.support import product_with_keys
from apps.payments.sandbox_server import notification_sign
from apps.payments.tests.factories import PaidNotificationFactory
from testing.processes import free_port, wait_until

from .sale import samples, value


def _post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _scrape(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return samples(response.read().decode())


@pytest.mark.django_db(transaction=True)
def test_web_and_worker_metrics_add_up_across_processes(tmp_path, monkeypatch):
    web_dir, worker_dir = tmp_path / "web", tmp_path / "worker"
    web_dir.mkdir()
    worker_dir.mkdir()
    (web_dir / "counter_4242.db").write_bytes(b"left over from a previous run")  # gunicorn empties it
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(web_dir))
    monkeypatch.setenv("RATELIMIT_ENABLE", "false")
    product = product_with_keys(keys=10, per_buyer_limit=1)
    worker_port = free_port()
    worker = CeleryWorker(
        concurrency=2,
        extra_env={"PROMETHEUS_MULTIPROC_DIR": str(worker_dir), "WORKER_METRICS_PORT": str(worker_port)},
    )
    server = GunicornServer(workers=2, threads=4)
    try:
        server.start()
        worker.start()
        order_nos, lock = [], threading.Lock()

        def buy(i: int) -> None:
            body = json.dumps({"sku": product.sku, "email": f"p{i}@example.com", "quantity": 1}).encode()
            status, answer = _post(f"{server.url}/api/v1/orders", body, {})
            assert status == 202, answer
            with lock:
                order_nos.append(answer["order_no"])

        threads = [threading.Thread(target=buy, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(order_nos) == 8
        # Each scrape is answered by either worker; each must count all eight.
        for _ in range(6):
            page = _scrape(f"{server.url}/metrics")
            assert value(page, "cardshop_checkouts_total", outcome="accepted") == 8
        assert not (web_dir / "counter_4242.db").exists()

        persistence.order_persist_queued(product_ids=[product.id])
        paid = order_nos[:5]
        for n, order_no in enumerate(paid):
            body, headers = notification_sign(
                PaidNotificationFactory(event_id=f"proc-{order_no}", order_no=order_no, amount="9.90", currency="CNY")
            )
            status, answer = _post(
                f"{server.url}/payments/webhook/sandbox", body, {**headers, "X-Request-ID": f"pay-req-{n}"}
            )
            assert status == 200, answer
        wait_until(
            lambda: Order.objects.filter(order_no__in=paid, status=Order.Status.DELIVERED).count() == 5,
            timeout=30,
            message="the worker to deliver the paid orders",
        )
        worker_url = f"http://127.0.0.1:{worker_port}/metrics"
        wait_until(
            lambda: value(_scrape(worker_url), "cardshop_paid_to_delivered_seconds_count") == 5,
            timeout=10,
            message="the worker's metrics to show five deliveries",
        )
        page = _scrape(worker_url)
        assert value(page, "cardshop_order_transitions_total", status="delivered") == 5
        assert (
            value(page, "cardshop_celery_tasks_total", task="apps.orders.tasks.fulfil_order_task", state="success") >= 1
        )
        web = _scrape(f"{server.url}/metrics")
        assert value(web, "cardshop_payment_notifications_total", provider="sandbox", outcome="accepted") == 5
        assert value(web, "cardshop_orders", status="awaiting_payment") == 3

        # Worker log lines are JSON and carry the id of the request that paid.
        lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
        assert any(line.get("request_id", "").startswith("pay-req-") for line in lines), worker.log()[-3000:]
    finally:
        worker.stop()
        server.stop()
