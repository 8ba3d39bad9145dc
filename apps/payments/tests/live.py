"""What the providers' live tests share: the shop under gunicorn and a Celery
worker configured for a provider's local fake, this test process configured
the same way, and an order awaiting payment."""

from contextlib import contextmanager

from apps.orders.models import Order
from apps.orders.services import persistence
from apps.orders.tests.processes import CeleryWorker, GunicornServer
from apps.orders.tests.support import checkout
from testing.processes import wait_until


@contextmanager
def live_shop(env: dict[str, str]):
    """gunicorn and a Celery worker with the provider's settings (`env`, as
    environment variables); yields the web server."""
    web = GunicornServer(workers=1, threads=8, extra_env=env).start()
    worker = CeleryWorker(concurrency=2, extra_env={**env, "SITE_URL": web.url})
    try:
        worker.start()
        yield web
    finally:
        worker.stop()
        web.stop()


def configure_like(settings, env: dict[str, str], *, site_url: str) -> None:
    """This test process configured as the servers are (it starts payments,
    queries and refunds itself)."""
    for name, value in env.items():
        setattr(settings, name, value.split(",") if name == "PAYMENT_PROVIDERS" else value)
    settings.SITE_URL = site_url


def awaiting_order(product, email: str, quantity: int = 1) -> Order:
    result = checkout(product, email=email, quantity=quantity)
    order_persisted(result.order_no)
    return Order.objects.get(order_no=result.order_no)


def order_persisted(order_no: str) -> None:
    """Persist now, or wait for the live worker that is doing it: the
    checkout published a persist task, and while the worker drains under the
    product's fence this process's drain skips the product."""
    persistence.order_persist_queued()
    wait_until(
        lambda: Order.objects.filter(order_no=order_no).exists(), timeout=15, message=f"order {order_no} persisted"
    )
