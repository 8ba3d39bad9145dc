"""Locust model of buyers during a sale, in proportion: most requests refresh
the product page or its API; some buyers order, poll the order until it is
placed, pay in the sandbox, poll until delivered and fetch their keys.

Run by `make loadtest` (bench/loadtest.py starts the shop for it), or against
a running local shop whose product LOCUST_SKU has min_page_seconds 0:

    LOCUST_SKU=BENCH-LOAD .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8000
"""

import os
import time
import uuid

from locust import FastHttpUser, between, task

SKU = os.environ.get("LOCUST_SKU", "BENCH-LOAD")
# Bounds on a buyer's waiting, so a stuck order ends the flow instead of the user.
POLL_SECONDS = float(os.environ.get("LOCUST_POLL_SECONDS", "1"))
POLL_ATTEMPTS = 30


class Buyer(FastHttpUser):
    wait_time = between(0.5, 2.0)

    @task(10)
    def product_page(self):
        self.client.get(f"/p/{SKU}", name="GET /p/[sku]")

    @task(3)
    def product_api(self):
        self.client.get(f"/api/v1/products/{SKU}", name="GET /api/v1/products/[sku]")

    @task(1)
    def buy(self):
        order = self._order()
        if order is None:
            return
        headers = {"X-Order-Token": order["access_token"]}
        status_url = order["status_url"]
        if not self._poll(status_url, headers, lambda s: s != "queued", "placed"):
            return
        with self.client.post(
            order["pay_url"], headers=headers, name="POST /api/v1/payments/sandbox/[no]/pay", catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"pay answered {response.status_code}")
                return
        if not self._poll(status_url, headers, lambda s: s == "delivered", "delivered"):
            return
        with self.client.get(
            status_url, headers=headers, name="GET /api/v1/orders/[no] (keys)", catch_response=True
        ) as response:
            if not response.json().get("keys"):
                response.failure("delivered order shows no keys")

    def _order(self) -> dict | None:
        body = {"sku": SKU, "quantity": 1, "email": f"{uuid.uuid4().hex[:16]}@bench.example.com"}
        with self.client.post("/api/v1/orders", json=body, name="POST /api/v1/orders", catch_response=True) as response:
            if response.status_code == 202:
                return response.json()
            if response.status_code == 409 and response.json().get("error") == "sold_out":
                response.success()  # a correct answer once the keys are gone
            else:
                response.failure(f"checkout answered {response.status_code}: {response.text[:200]}")
        return None

    def _poll(self, url: str, headers: dict, done, what: str) -> bool:
        for _ in range(POLL_ATTEMPTS):
            time.sleep(POLL_SECONDS)  # gevent-patched: waits without blocking other users
            with self.client.get(
                url, headers=headers, name="GET /api/v1/orders/[no] (poll)", catch_response=True
            ) as response:
                if response.status_code != 200:
                    response.failure(f"order status answered {response.status_code}")
                    return False
                if done(response.json().get("status")):
                    return True
        self.environment.events.request.fire(
            request_type="FLOW",
            name=f"order {what}",
            response_time=POLL_SECONDS * POLL_ATTEMPTS * 1000,
            response_length=0,
            exception=RuntimeError(f"order not {what} after {POLL_ATTEMPTS} polls"),
            context={},
        )
        return False
