"""Refunds and odd money, through the real webhook with signed sandbox
notifications: a refund after delivery revokes the keys; a payment after a
refund never delivers; a second payment makes the order visibly overpaid and
is refunded through the provider that took it; money that does not match, and
an event id already used for another order, are refused and logged."""

import threading
import urllib.request
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from apps.cardkeys.models import CardKey
from apps.orders.models import Order
from apps.orders.selectors import order_snapshot
from apps.orders.services import persistence
from apps.orders.tests.support import checkout, pay, product_with_keys
from apps.payments.models import PaymentEvent
from apps.payments.refunds import payment_refund_request_for_event
from apps.payments.sandbox_server import SIGNATURE_HEADER, notification_sign
from apps.payments.tests.factories import PaidNotificationFactory
from apps.payments.tests.fake_server import opener
from apps.stock.warmup import available_keys

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/payments/webhook/sandbox"
HEADER = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")


def _notify(client, order, **fields):
    body, headers = notification_sign(PaidNotificationFactory(order=order, **fields))
    return client.post(URL, data=body, content_type="application/json", **{HEADER: headers[SIGNATURE_HEADER]})


def _refund(client, order, *, event_id="refund-1", amount=None, payment_event_id=None, **fields):
    extra = {"payment_event_id": payment_event_id} if payment_event_id else {}
    return _notify(
        client, order, kind="refunded", event_id=event_id, amount=str(amount or order.amount), **extra, **fields
    )


def _metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def delivered(celery_eager):
    product = product_with_keys(keys=4)
    result = checkout(product, quantity=2)
    persistence.order_persist_queued()
    pay(result.order_no, event_id="first-payment")
    order = Order.objects.get(order_no=result.order_no)
    assert order.status == Order.Status.DELIVERED
    return order


def test_a_partial_refund_of_a_delivered_order_revokes_its_keys(client, delivered, sandbox_sent):
    before = _metric("cardshop_orders_refunded_after_delivery_total")
    available = available_keys(product_id=delivered.product_id)

    response = _refund(client, delivered, amount=Decimal("5.00"), payment_event_id="first-payment")

    assert response.status_code == 200
    delivered.refresh_from_db()
    assert delivered.status == Order.Status.REFUNDED
    event = PaymentEvent.objects.get(kind="refunded")
    assert (event.amount, event.currency, event.event_id) == (Decimal("5.00"), "CNY", "refund-1")
    assert event.refunds_event_id == "first-payment"
    keys = CardKey.objects.filter(order=delivered)
    assert keys.count() == 2 and {key.status for key in keys} == {"revoked"}
    # Never counted available, never sold again.
    assert available_keys(product_id=delivered.product_id) == available
    snapshot = order_snapshot(delivered)
    assert snapshot["status"] == "refunded" and "keys" not in snapshot
    assert _metric("cardshop_orders_refunded_after_delivery_total") == before + 1
    # The same refund again changes nothing.
    assert _refund(client, delivered, amount=Decimal("5.00")).status_code == 200
    assert PaymentEvent.objects.filter(kind="refunded").count() == 1


def test_a_paid_notification_after_the_refund_is_recorded_and_delivers_nothing(client, celery_eager, sandbox_sent):
    product = product_with_keys(keys=2)
    result = checkout(product)
    persistence.order_persist_queued()
    order = Order.objects.get(order_no=result.order_no)

    # The provider's refund overtakes its own paid notification.
    assert _refund(client, order, payment_event_id="late-payment").status_code == 200
    response = _notify(client, order, event_id="late-payment")

    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    assert PaymentEvent.objects.filter(order=order, kind="paid", event_id="late-payment").exists()
    assert not CardKey.objects.filter(order=order).exists()
    assert "after the refund" in order.attention_reason
    sandbox_sent.assert_not_called()  # that very payment was the one refunded


def test_another_payment_after_the_refund_is_refunded_too(
    client, delivered, sandbox_sent, django_capture_on_commit_callbacks
):
    assert _refund(client, delivered, payment_event_id="first-payment").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = _notify(client, delivered, event_id="paid-again")

    assert response.status_code == 200
    delivered.refresh_from_db()
    assert delivered.status == Order.Status.REFUNDED and delivered.overpaid
    fields = sandbox_sent.call_args.kwargs["fields"]
    assert fields["kind"] == "refunded" and fields["payment_event_id"] == "paid-again"


def test_a_second_payment_makes_the_order_overpaid_and_is_refunded_by_its_provider(
    client, delivered, sandbox_sent, django_capture_on_commit_callbacks
):
    before = _metric("cardshop_orders_overpaid_total")
    with django_capture_on_commit_callbacks(execute=True):
        response = _notify(client, delivered, event_id="second-payment")

    assert response.status_code == 200
    delivered.refresh_from_db()
    assert delivered.status == Order.Status.DELIVERED and delivered.overpaid
    assert _metric("cardshop_orders_overpaid_total") == before + 1
    assert CardKey.objects.filter(order=delivered, status="sold").count() == 2
    # The refund targets the extra payment, not the first.
    fields = sandbox_sent.call_args.kwargs["fields"]
    assert (fields["kind"], fields["payment_event_id"], fields["amount"]) == ("refunded", "second-payment", "19.80")

    # The provider's refund of the extra payment leaves the order delivered.
    response = _refund(client, delivered, event_id=fields["event_id"], payment_event_id="second-payment")
    assert response.status_code == 200
    delivered.refresh_from_db()
    assert delivered.status == Order.Status.DELIVERED
    assert CardKey.objects.filter(order=delivered, status="sold").count() == 2
    # Asked again (a task run twice): already refunded, nothing is sent.
    sandbox_sent.reset_mock()
    extra = PaymentEvent.objects.get(event_id="second-payment")
    assert payment_refund_request_for_event(event_pk=extra.pk) is False
    sandbox_sent.assert_not_called()


@pytest.mark.parametrize("changes", [{"amount": "30.00"}, {"currency": "USD"}])
def test_a_refund_that_does_not_match_is_refused_and_logged(client, delivered, caplog, changes):
    code = "refund_mismatch"
    before = _metric("cardshop_payment_anomalies_total", kind=code)
    response = _refund(client, delivered, **changes)

    assert response.status_code == 400
    assert response.json()["error"] == code and response.json()["detail"]
    delivered.refresh_from_db()
    assert delivered.status == Order.Status.DELIVERED
    assert not PaymentEvent.objects.filter(kind="refunded").exists()
    assert _metric("cardshop_payment_anomalies_total", kind=code) == before + 1
    assert any(r.levelname == "WARNING" and delivered.order_no in r.getMessage() for r in caplog.records)


def test_a_payment_that_does_not_match_is_logged_as_an_anomaly(client, celery_eager, caplog):
    product = product_with_keys(keys=1)
    checkout(product)
    persistence.order_persist_queued()
    order = Order.objects.get(product=product)
    before = _metric("cardshop_payment_anomalies_total", kind="payment_mismatch")

    response = _notify(client, order, amount="1.00")

    assert response.status_code == 400 and response.json()["error"] == "payment_mismatch"
    assert _metric("cardshop_payment_anomalies_total", kind="payment_mismatch") == before + 1
    assert any(r.levelname == "WARNING" and order.order_no in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["paid", "refunded"])
def test_an_event_id_of_another_order_is_refused_and_logged(client, delivered, celery_eager, caplog, kind):
    other = checkout(delivered.product, email="other@example.com")
    persistence.order_persist_queued()
    other = Order.objects.get(order_no=other.order_no)
    before = _metric("cardshop_payment_anomalies_total", kind="event_id_reused")

    response = _notify(client, other, event_id="first-payment", kind=kind)

    assert response.status_code == 409
    assert response.json()["error"] == "event_id_reused"
    other.refresh_from_db()
    assert other.status == Order.Status.AWAITING_PAYMENT
    assert PaymentEvent.objects.filter(order=other).count() == 0
    assert _metric("cardshop_payment_anomalies_total", kind="event_id_reused") == before + 1
    assert any(r.levelname == "WARNING" and other.order_no in r.getMessage() for r in caplog.records)


def test_a_payment_and_its_refund_at_once_end_in_one_consistent_state(live_server, celery_eager, fulfil_enqueued):
    """Both notifications over real HTTP to the live server's threads, at the
    same moment, many times: whichever wins the row lock, the order ends
    refunded with both events recorded and no key handed out."""
    for round_ in range(5):
        product = product_with_keys(keys=1)
        result = checkout(product, email=f"race{round_}@example.com")
        persistence.order_persist_queued()
        order = Order.objects.get(order_no=result.order_no)
        messages = [
            notification_sign(PaidNotificationFactory(order=order, event_id=f"pay-{round_}")),
            notification_sign(
                PaidNotificationFactory(
                    order=order, event_id=f"refund-{round_}", kind="refunded", payment_event_id=f"pay-{round_}"
                )
            ),
        ]
        barrier = threading.Barrier(2)
        statuses, errors = [], []

        def deliver(body, headers, barrier=barrier, statuses=statuses, errors=errors):
            request = urllib.request.Request(
                live_server.url + URL,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", **headers},
            )
            barrier.wait()
            try:
                with opener.open(request, timeout=30) as answer:
                    statuses.append(answer.status)
            except Exception as exc:  # an HTTPError is an answer too; keep it to report
                errors.append(exc)

        threads = [threading.Thread(target=deliver, args=message) for message in messages]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == [] and statuses == [200, 200]
        order.refresh_from_db()
        assert order.status == Order.Status.REFUNDED
        assert not order.overpaid
        assert sorted(PaymentEvent.objects.filter(order=order).values_list("kind", flat=True)) == ["paid", "refunded"]
        assert not CardKey.objects.filter(order=order).exists()
