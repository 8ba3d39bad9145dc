"""Stripe end to end with real servers: checkout, persistence, a Checkout
Session at the local fake of Stripe, the buyer pays there, Stripe's signed
event reaches the shop's webhook under gunicorn, a Celery worker delivers the
keys; refunds go back through Stripe's API and return as charge.refunded."""

import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.selectors import order_snapshot_get
from apps.orders.services.expiry import order_expire_due
from apps.orders.tests.processes import CeleryWorker, GunicornServer
from apps.orders.tests.support import checkout, pay, product_with_keys
from apps.payments import services
from apps.payments.models import PaymentEvent
from apps.payments.tests.live import order_persisted

WEBHOOK = "/payments/webhook/stripe"


@pytest.fixture
def stripe_servers(fake_stripe):
    """gunicorn and a Celery worker that know the fake Stripe's keys and address."""
    env = {
        "PAYMENT_PROVIDERS": "sandbox,stripe",
        "STRIPE_SECRET_KEY": fake_stripe.api_key,
        "STRIPE_WEBHOOK_SECRET": fake_stripe.webhook_secret,
        "STRIPE_API_BASE": fake_stripe.url,
    }
    server = GunicornServer(workers=2, threads=8, extra_env=env).start()
    try:
        worker = CeleryWorker(extra_env=env).start()
    except BaseException:
        server.stop()
        raise
    yield server, worker
    worker.stop()
    server.stop()


def _checked_out(product, *, email: str, quantity: int = 1):
    result = checkout(product, email=email, quantity=quantity)
    order_persisted(result.order_no)
    snapshot = order_snapshot_get(order_no=result.order_no, token=result.access_token)
    assert snapshot["status"] == Order.Status.AWAITING_PAYMENT
    return result, snapshot


def _stripe_start(snapshot: dict) -> str:
    start = services.payment_start(snapshot=snapshot, method="stripe", token=None, device="pc", client_ip="127.0.0.1")
    return start.pay_url


def _session_id(fake, order_no: str) -> str:
    (session,) = [s for s in fake.sessions.values() if s["client_reference_id"] == order_no]
    return session["id"]


def _wait_for_status(order_no: str, status: str, timeout: float = 45) -> Order:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order = Order.objects.get(order_no=order_no)
        if order.status == status:
            return order
        time.sleep(0.2)
    raise AssertionError(f"order {order_no} is {order.status}, not {status}, after {timeout}s")


@pytest.mark.django_db(transaction=True)
def test_paid_at_stripe_the_same_event_ten_times_at_once_delivers_one_set_of_keys(fake_stripe, stripe_servers):
    server, _worker = stripe_servers
    product = product_with_keys(keys=5)
    result, snapshot = _checked_out(product, email="stripe-buyer@example.com", quantity=2)
    assert _stripe_start(snapshot).startswith(fake_stripe.url)
    event = fake_stripe.pay(_session_id(fake_stripe, result.order_no))  # not sent yet: webhook_url unset

    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def stripe_delivers():
        barrier.wait(10)
        statuses.append(fake_stripe.send(event, url=server.url + WEBHOOK)[0])

    threads = [threading.Thread(target=stripe_delivers) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(statuses) == [200] * 10
    order = _wait_for_status(result.order_no, Order.Status.DELIVERED)
    assert PaymentEvent.objects.filter(order=order).count() == 1
    payment = PaymentEvent.objects.get(order=order)
    assert (payment.provider, payment.event_id) == (
        "stripe",
        fake_stripe.sessions[_session_id(fake_stripe, order.order_no)]["payment_intent"],
    )
    assert CardKey.objects.filter(order=order, status="sold").count() == 2
    assert CardKey.objects.filter(status="sold").count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_forged_event_to_the_live_webhook_changes_nothing(fake_stripe, stripe_servers):
    server, _worker = stripe_servers
    product = product_with_keys(keys=1)
    result, snapshot = _checked_out(product, email="forger@example.com")
    _stripe_start(snapshot)
    event = fake_stripe.pay(_session_id(fake_stripe, result.order_no))
    fake_stripe.webhook_secret = "whsec_" + "0" * 32  # someone without the shop's signing secret

    status, body = fake_stripe.send(event, url=server.url + WEBHOOK)

    assert status == 400 and b"invalid_signature" in body
    time.sleep(1)
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.AWAITING_PAYMENT
    assert not PaymentEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sold_out_meanwhile", [False, True])
def test_a_payment_on_the_thirty_minute_session_after_the_order_expired_is_a_late_payment(
    fake_stripe, stripe_servers, sold_out_meanwhile
):
    """The order's deadline is 15 minutes away, Stripe's session lives 30: the
    shop's deadline rules (the order expires, its stock returns, its session is
    closed), and a payment made on the session whose notification arrives
    only afterwards is delivered if a key remains, else refunded through Stripe."""
    server, _worker = stripe_servers
    product = product_with_keys(keys=1)
    late, snapshot = _checked_out(product, email="late@example.com")
    deadline = Order.objects.get(order_no=late.order_no).reserved_until
    assert deadline < timezone.now() + timedelta(minutes=30)
    _stripe_start(snapshot)
    session = fake_stripe.sessions[_session_id(fake_stripe, late.order_no)]
    assert session["expires_at"] >= time.time() + 30 * 60  # Stripe's minimum, past the order's deadline
    event = fake_stripe.pay(session["id"])  # paid on Stripe's page; the notification is held up

    # A payment was started: expiry waits a little longer while the shop asks Stripe.
    assert order_expire_due(now=deadline + timedelta(seconds=1)) == 0
    grace = timedelta(seconds=settings.PAYMENT_QUERY_GRACE_SECONDS)
    assert order_expire_due(now=deadline + grace + timedelta(seconds=1)) == 1
    if sold_out_meanwhile:
        other, _ = _checked_out(product, email="other@example.com")
        pay(other.order_no, event_id=f"sandbox-{other.order_no}")
        _wait_for_status(other.order_no, Order.Status.DELIVERED)

    fake_stripe.webhook_url = server.url + WEBHOOK  # Stripe sends its events by itself now
    status, _body = fake_stripe.send(event)  # the held-up notification arrives
    assert status == 200

    if sold_out_meanwhile:
        order = _wait_for_status(late.order_no, Order.Status.REFUNDED)
        (refund,) = fake_stripe.refunds.values()
        assert (refund["payment_intent"], refund["amount"]) == (session["payment_intent"], 990)
        kinds = sorted(PaymentEvent.objects.filter(order=order).values_list("kind", flat=True))
        assert kinds == ["paid", "refunded"]
        assert not CardKey.objects.filter(order=order).exists()
    else:
        order = _wait_for_status(late.order_no, Order.Status.DELIVERED)
        assert CardKey.objects.filter(order=order, status="sold").count() == 1
        assert fake_stripe.refunds == {}
