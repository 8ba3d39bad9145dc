"""The buyer's language at checkout travels with the reservation to the order,
and the order's mails are written in it (whatever the worker's language)."""

import json

import pytest
from django.core import mail
from django.utils import translation

from apps.orders import mail as order_mail
from apps.orders.models import Order
from apps.orders.services import fulfilment, persistence
from apps.stock.reservations import Reservation
from apps.stock.selectors import stock_reservation_get

from .support import checkout, pay, product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def _deliver_and_mail(order_no: str) -> mail.EmailMessage:
    persistence.order_persist_queued()
    pay(order_no, event_id=f"e-{order_no}")
    fulfilment.fulfilment_run(order_id=None)
    order = Order.objects.get(order_no=order_no)
    assert order.status == Order.Status.DELIVERED
    mail.outbox.clear()
    # The worker runs in the shop's default language (zh-hans), like a Celery worker.
    with translation.override("zh-hans"):
        order_mail.order_keys_emails_send(order_ids=[order.id])
    assert len(mail.outbox) == 1
    return mail.outbox[0]


@pytest.mark.parametrize(
    ("language", "subject_start", "body_text"),
    [("en", "Your keys for order", "Your keys:"), ("zh-hans", "您的订单", "您的卡密：")],
)
def test_the_mail_speaks_the_language_of_the_checkout(published, language, subject_start, body_text):
    product = product_with_keys(keys=2)
    with translation.override(language):
        result = checkout(product)
    reservation = stock_reservation_get(product_id=product.id, order_no=result.order_no)
    assert reservation.language == language
    message = _deliver_and_mail(result.order_no)
    assert Order.objects.get(order_no=result.order_no).language == language
    assert message.subject.startswith(subject_start)
    assert body_text in message.body


def test_the_api_checkout_takes_the_requests_language(client, published):
    product = product_with_keys(keys=2)
    response = client.post(
        "/api/v1/orders",
        data=json.dumps({"sku": product.sku, "email": "en@x.com", "quantity": 1}),
        content_type="application/json",
        headers={"Accept-Language": "en-US,en;q=0.9"},
    )
    assert response.status_code == 202
    message = _deliver_and_mail(response.json()["order_no"])
    assert message.subject.startswith("Your keys for order")


def test_a_reservation_queued_before_the_language_existed_is_read_as_the_default():
    record = Reservation(
        order_no="N1",
        buyers=("e:x",),
        email="a@x.com",
        quantity=1,
        token_hash="h",
        unit_price="1.00",
        currency="CNY",
        created_at=1,
        reserved_until=2,
    )
    old = json.loads(record.to_json())
    del old["language"]
    assert Reservation.from_json(json.dumps(old)).language == ""
    assert Reservation.from_json(record.to_json()) == record
