"""JSON logs with the request id and order number; secrets never logged."""

import io
import json
import logging
from unittest import mock

import pytest
from django.test import Client

from apps.core.logging import JsonFormatter, redact
from apps.orders.models import Order
from apps.orders.services import fulfilment, persistence
from apps.orders.tests.support import product_with_keys

from .sale import pay


@pytest.fixture
def captured_logs():
    """Every log record of the test, formatted as production formats it, at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # The SQL log is the likeliest place for a secret to slip through.
    sql = logging.getLogger("django.db.backends")
    old_sql_level = sql.level
    sql.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        sql.setLevel(old_sql_level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_line_is_json_with_the_request_id_and_the_order_number(client, db, captured_logs):
    response = client.get("/orders/241122-9-ABCDEFGHJKMN/status?token=not-the-token", HTTP_X_REQUEST_ID="req-42.a")
    assert response.status_code == 404
    assert response["X-Request-ID"] == "req-42.a"
    records = [line for line in lines(captured_logs) if line["logger"] == "django.request"]
    assert records, captured_logs.getvalue()
    assert records[-1]["request_id"] == "req-42.a"
    assert records[-1]["order_no"] == "241122-9-ABCDEFGHJKMN"
    assert {"time", "level", "message"} <= set(records[-1])


def test_a_request_id_that_is_not_a_plain_token_is_replaced(client, db):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="evil\nline: injected " + "x" * 80)
    assert response["X-Request-ID"] != ""
    assert "\n" not in response["X-Request-ID"] and len(response["X-Request-ID"]) == 32
    assert client.get("/healthz")["X-Request-ID"] != response["X-Request-ID"]


def test_worker_lines_name_their_order_from_the_message():
    record = logging.LogRecord(
        "apps.orders",
        logging.ERROR,
        __file__,
        1,
        "order %s needs attention: %s",
        ("241122-7-0123456789AB", "keys ran short"),
        None,
    )
    assert json.loads(JsonFormatter().format(record))["order_no"] == "241122-7-0123456789AB"


@pytest.mark.parametrize(
    "text",
    [
        "GET /orders/X?token=s3cr3tTok&x=1",
        'payload {"access_token": "s3cr3tTok"}',
        "X-Order-Token: s3cr3tTok",
        "Authorization: Bearer s3cr3tTok",
        "X-Sandbox-Signature=s3cr3tTok",
        "page_token=s3cr3tTok",
    ],
)
def test_token_like_values_are_scrubbed(text):
    assert "s3cr3tTok" not in redact(text)
    assert "[redacted]" in redact(text)


@pytest.mark.django_db(transaction=True)
def test_a_planted_key_bought_and_delivered_never_reaches_the_logs(settings, captured_logs):
    """Import a key, buy it, pay (signed webhook), deliver, mail and reveal it,
    all with DEBUG logging on (SQL too): neither the key, nor the order's
    access token, nor the page token, nor the payment signature is logged."""
    import time

    from django.core import signing

    from apps.cardkeys.services import cardkeys_import
    from apps.catalog.page_tokens import SALT
    from apps.orders.mail import order_keys_email_send
    from apps.stock.warmup import stock_warm

    settings.RATELIMIT_ENABLE = False
    settings.DEBUG = True  # Django keeps and logs every query
    product = product_with_keys(keys=0, warm=False, min_page_seconds=1)
    planted = "PLANTED-SECRET-7Q4Z-93KD-XX11"
    cardkeys_import(product=product, source=io.BytesIO(planted.encode() + b"\n"), file_name="keys.txt")
    stock_warm(product=product)
    client = Client()
    page_token = signing.dumps({"sku": product.sku, "at": time.time() - 5}, salt=SALT)
    response = client.post(
        "/api/v1/orders",
        {"sku": product.sku, "email": "buyer@example.com", "quantity": 1, "page_token": page_token},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    persistence.order_persist_queued(product_ids=[product.id])
    order = Order.objects.get(order_no=body["order_no"])
    with mock.patch("apps.orders.tasks.fulfil_order_task.delay"):
        paid, signature = pay(client, order=order, with_signature=True)
    assert paid.status_code == 200
    fulfilment.order_fulfil(order_id=order.id)
    order_keys_email_send(order_id=order.id)
    shown = client.get(f"/api/v1/orders/{order.order_no}", HTTP_X_ORDER_TOKEN=body["access_token"]).json()
    assert shown["keys"] == [planted]  # the secret really went all the way through
    client.get(f"/orders/{order.order_no}?token={body['access_token']}")
    logging.getLogger("apps.test").warning("order %s revealed", order.order_no)

    logged = captured_logs.getvalue()
    assert order.order_no in logged  # the capture saw this sale
    assert "SELECT" in logged and "INSERT" in logged  # and its SQL
    for secret in (planted, body["access_token"], page_token, signature):
        assert secret not in logged


@pytest.mark.django_db
def test_a_task_run_in_process_gives_the_request_id_back_afterwards():
    from apps.core.logging import request_id_get, request_id_reset, request_id_set
    from apps.orders.tasks import expire_reservations_task

    token = request_id_set("outer-request")
    try:
        result = expire_reservations_task.apply()
        assert result.successful()
        assert request_id_get() == "outer-request"
    finally:
        request_id_reset(token)
    assert request_id_get() is None
