"""Delivery mails under worker kills (issue 12): real Celery workers drain
the mails of a batch of delivered orders, are SIGKILLed twice mid-run and
started again; every order is mailed, and none twice.

The workers' mail backend files each mail the moment it is accepted, after
the time a mail server takes to accept one (apps/orders/tests/mail_backends.py),
so mails are counted across processes, kills included. The broker is the one
the test settings give (Redis or RabbitMQ)."""

import email
import time
from collections import Counter
from pathlib import Path

import pytest

from apps.orders.models import Order
from apps.orders.services import fulfilment

from . import processes  # not test_environment itself: pytest would collect a test_* name
from .processes import CeleryWorker
from .support import paid_orders, product_with_keys

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

ORDERS = 120
VISIBILITY_TIMEOUT = float(processes.test_environment()["CELERY_VISIBILITY_TIMEOUT"])


def mails_by_recipient(directory: Path) -> Counter:
    return Counter(email.message_from_bytes(path.read_bytes())["To"] for path in directory.glob("*.eml"))


def test_workers_killed_mid_mail_drain_then_every_order_mailed_exactly_once(tmp_path):
    orders = paid_orders(product_with_keys(keys=ORDERS, per_buyer_limit=1), ORDERS)
    # Delivered here; their mails are queued on the broker, one message per fulfilment batch.
    fulfilment.fulfilment_run(order_id=None)
    assert Order.objects.filter(status=Order.Status.DELIVERED).count() == ORDERS
    env = {
        "TEST_EMAIL_BACKEND": "apps.orders.tests.mail_backends.SlowDirectoryBackend",
        "TEST_MAIL_DIR": str(tmp_path),
        "TEST_MAIL_DELAY": "0.1",
        # A mail its killed worker was sending waits this long, not two minutes.
        "MAIL_LEASE_SECONDS": "3",
    }
    worker = CeleryWorker(concurrency=2, extra_env=env)
    kills = []
    try:
        for mailed_before_kill in (25, 75):
            worker.start()
            worker.wait_until(
                lambda n=mailed_before_kill: mails_by_recipient(tmp_path).total() >= n,
                timeout=30,
                what=f"{mailed_before_kill} mails (got {mails_by_recipient(tmp_path).total()} before)",
            )
            worker.kill()
            kills.append(mails_by_recipient(tmp_path).total())
            # The Redis transport hands a dead worker's messages out again
            # when a worker starts after their visibility timeout (3 s in
            # tests), then only every 100 s; RabbitMQ at once.
            time.sleep(VISIBILITY_TIMEOUT + 0.5)
        worker.start()
        worker.wait_until(
            lambda: not Order.objects.filter(keys_emailed_at__isnull=True).exists(),
            timeout=60,
            what="every order's mail marked sent",
        )
    finally:
        worker.stop()
    assert kills[-1] < ORDERS, f"the workers finished before the last kill ({kills})"
    mailed = mails_by_recipient(tmp_path)
    duplicates = {to: n for to, n in mailed.items() if n > 1}
    missing = {o.buyer_email for o in orders} - set(mailed)
    print(f"worker kills at {kills} mails: {len(duplicates)} duplicates, {len(missing)} missing of {ORDERS}")
    assert duplicates == {}
    assert missing == set()
