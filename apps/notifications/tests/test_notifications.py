"""Merchant notifications on paid orders and low stock: email, signed webhook
and Telegram, each once per event, retried alone, never in the way of the
buyer's keys, never carrying a key."""

import json

import pytest
from django.core import mail

from apps.cardkeys.models import CardKey
from apps.catalog.models import ProductInputField
from apps.catalog.services import product_stock_set
from apps.notifications import services, tasks
from apps.notifications.models import Delivery, StockAlert
from apps.orders.models import Order
from apps.orders.services import persistence
from apps.orders.services.checkout import order_checkout
from apps.orders.tests.delivery_support import product_manual, product_reusable
from apps.orders.tests.support import add_keys, checkout, pay, product_with_keys
from apps.stock.services import stock_adjust

from .fakes import FakeTelegramBotApi, FakeWebhookReceiver
from .support import (
    BOT_TOKEN,
    CHAT_ID,
    MERCHANT_EMAIL,
    WEBHOOK_SECRET,
    notifications_configure,
    signature_valid,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def celery_eager(celery_eager):
    """The root fixture, with retries run in place: a task's Retry loops
    through apply() instead of propagating to the code that published it."""
    from cardshop.celery import app as celery_app

    celery_app.conf.task_eager_propagates = False  # the root fixture resets it


@pytest.fixture
def receiver():
    with FakeWebhookReceiver() as fake:
        yield fake


@pytest.fixture
def bot(settings):
    with FakeTelegramBotApi(BOT_TOKEN) as fake:
        settings.TELEGRAM_API_BASE = fake.url
        yield fake


def buy(product, *, email="buyer@example.com", quantity=1) -> Order:
    result = checkout(product, email=email, quantity=quantity)
    persistence.order_persist_queued()
    pay(result.order_no, event_id=f"evt-{result.order_no}")
    return Order.objects.get(order_no=result.order_no)


def merchant_mails():
    return [m for m in mail.outbox if m.to == [MERCHANT_EMAIL]]


def sold_secrets() -> list[str]:
    return [key.secret for key in CardKey.objects.filter(status=CardKey.Status.SOLD)]


def test_a_paid_order_reaches_every_channel_signed_and_without_keys(celery_eager, receiver, bot):
    notifications_configure(
        webhook_url=receiver.url + "/hooks/cardshop", telegram=True, email=True, notify_low_stock=False
    )
    product = product_with_keys(keys=5, title="Steam Wallet 100")
    order = buy(product, email="alice@buyer.example", quantity=2)

    assert order.status == Order.Status.DELIVERED
    # The webhook: one POST, signed as documented, the event id in header and body.
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["path"] == "/hooks/cardshop"
    assert signature_valid(
        header=request["headers"]["X-Cardshop-Signature"], body=request["body"], secret=WEBHOOK_SECRET
    )
    assert not signature_valid(
        header=request["headers"]["X-Cardshop-Signature"], body=request["body"] + b" ", secret=WEBHOOK_SECRET
    )
    payload = json.loads(request["body"])
    assert payload["type"] == "order.paid"
    assert payload["id"] == request["headers"]["X-Cardshop-Event-Id"] and payload["id"].startswith("evt_")
    assert payload["data"]["order_no"] == order.order_no
    assert payload["data"]["sku"] == product.sku
    assert payload["data"]["quantity"] == "2"
    assert payload["data"]["amount"] == str(order.amount) and payload["data"]["currency"] == order.currency
    assert payload["data"]["buyer_email"] == "alice@buyer.example"
    # Telegram: sendMessage to the configured chat, with the order's facts.
    assert len(bot.messages) == 1
    assert bot.messages[0]["chat_id"] == CHAT_ID
    assert order.order_no in bot.messages[0]["text"] and "alice@buyer.example" in bot.messages[0]["text"]
    assert "Steam Wallet 100" in bot.messages[0]["text"]
    # Email: the merchant's mailbox (the buyer's own delivery mail goes out too).
    [merchant_mail] = merchant_mails()
    assert order.order_no in merchant_mail.subject and "alice@buyer.example" in merchant_mail.body
    assert any(m.to == ["alice@buyer.example"] for m in mail.outbox)
    # No key secret in anything the merchant gets, nor in the stored records.
    secrets = sold_secrets()
    assert len(secrets) == 2
    told = [request["body"].decode(), bot.messages[0]["text"], merchant_mail.subject, merchant_mail.body]
    told += [json.dumps(d.payload) + d.text + d.subject for d in Delivery.objects.all()]
    for secret in secrets:
        assert all(secret not in text for text in told)
    assert set(Delivery.objects.values_list("channel", "status")) == {
        ("email", "sent"),
        ("webhook", "sent"),
        ("telegram", "sent"),
    }


def test_a_failing_webhook_is_retried_with_growing_waits_and_never_delays_the_keys(celery_eager, receiver):
    receiver.statuses = [500, 503]
    notifications_configure(webhook_url=receiver.url, notify_low_stock=False)
    product = product_with_keys(keys=3)
    order = buy(product, email="bob@buyer.example")

    assert order.status == Order.Status.DELIVERED and order.delivered_at is not None
    assert [m.to for m in mail.outbox] == [["bob@buyer.example"]]  # the keys went out
    assert len(receiver.requests) == 3
    # Every try is the same event, signed afresh.
    assert len({r["headers"]["X-Cardshop-Event-Id"] for r in receiver.requests}) == 1
    assert len({r["body"] for r in receiver.requests}) == 1
    for request in receiver.requests:
        assert signature_valid(
            header=request["headers"]["X-Cardshop-Signature"], body=request["body"], secret=WEBHOOK_SECRET
        )
    delivery = Delivery.objects.get(channel="webhook")
    assert delivery.status == Delivery.Status.SENT and delivery.attempts == 3
    attempts = list(delivery.attempt_records.values_list("number", "succeeded", "http_status", "retry_in_seconds"))
    assert attempts == [(1, False, 500, 5), (2, False, 503, 10), (3, True, 200, None)]


def test_the_fulfilment_is_not_touched_when_notifications_cannot_even_be_queued(celery_eager, receiver, monkeypatch):
    notifications_configure(webhook_url=receiver.url)

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.notify_order_paid_task, "delay", broker_down)
    monkeypatch.setattr(tasks.stock_low_check_task, "delay", broker_down)
    product = product_with_keys(keys=2)
    order = buy(product, email="carol@buyer.example")
    assert order.status == Order.Status.DELIVERED
    assert [m.to for m in mail.outbox] == [["carol@buyer.example"]]
    assert receiver.requests == []


def test_a_webhook_that_never_answers_gives_up_after_the_bounded_attempts(celery_eager, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 3
    with FakeWebhookReceiver() as gone:
        url = gone.url  # nothing listens there once it is stopped
    notifications_configure(webhook_url=url, notify_low_stock=False)
    order = buy(product_with_keys(keys=2), email="dan@buyer.example")
    assert order.status == Order.Status.DELIVERED
    assert [m.to for m in mail.outbox] == [["dan@buyer.example"]]
    delivery = Delivery.objects.get(channel="webhook")
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 3
    waits = list(delivery.attempt_records.values_list("retry_in_seconds", flat=True))
    assert waits == [5, 10, None]
    assert "Connection refused" in delivery.last_error or "URLError" in delivery.last_error


def test_a_paid_order_processed_twice_notifies_once_per_channel(celery_eager, receiver, bot):
    notifications_configure(webhook_url=receiver.url, telegram=True, email=True, notify_low_stock=False)
    order = buy(product_with_keys(keys=3))
    # The payment notification again (same event): no new paid transition.
    pay(order.order_no, event_id=f"evt-{order.order_no}")
    # The fan-out task delivered twice (a redelivered message), and the service called again.
    tasks.notify_order_paid_task.delay(order.id)
    tasks.notify_order_paid_task.apply(args=[order.id])
    assert services.notifications_order_paid(order_id=order.id) == []
    # And a send task published twice for a delivery already sent.
    for delivery in Delivery.objects.all():
        tasks.notification_deliver_task.apply(args=[delivery.id])

    assert len(receiver.requests) == 1
    assert len(bot.messages) == 1
    assert len(merchant_mails()) == 1
    assert Delivery.objects.count() == 3
    assert all(d.attempts == 1 for d in Delivery.objects.all())


def test_telegram_refusing_the_token_fails_at_once_without_showing_it(celery_eager, settings):
    with FakeTelegramBotApi("another:token") as bot:
        settings.TELEGRAM_API_BASE = bot.url
        notifications_configure(telegram=True, notify_low_stock=False)
        buy(product_with_keys(keys=2))
    delivery = Delivery.objects.get(channel="telegram")
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 1  # retrying cannot help
    assert "Unauthorized" in delivery.last_error and BOT_TOKEN not in delivery.last_error
    assert bot.messages == []


def test_telegram_flood_control_is_waited_out_as_the_api_asks(celery_eager, settings):
    with FakeTelegramBotApi(BOT_TOKEN, flood_answers=1, retry_after=42) as bot:
        settings.TELEGRAM_API_BASE = bot.url
        notifications_configure(telegram=True, notify_low_stock=False)
        order = buy(product_with_keys(keys=2))
    delivery = Delivery.objects.get(channel="telegram")
    assert delivery.status == Delivery.Status.SENT and delivery.attempts == 2
    attempts = list(delivery.attempt_records.values_list("http_status", "retry_in_seconds"))
    assert attempts == [(429, 42), (200, None)]  # not the 5 s of the plain backoff
    assert len(bot.messages) == 1 and order.order_no in bot.messages[0]["text"]


def test_low_stock_is_announced_once_per_crossing_and_rearmed_by_a_restock(celery_eager, bot):
    notifications_configure(telegram=True, notify_paid_orders=False, low_stock_threshold=100)
    product = product_with_keys(keys=5, title="Game Pass")
    StockAlert.objects.create(product=product, threshold=2)  # its own threshold beats the shop's 100

    buy(product, email="a1@x.example")  # 4 left
    buy(product, email="a2@x.example")  # 3 left
    assert bot.messages == []
    buy(product, email="a3@x.example")  # 2 left: crosses
    assert len(bot.messages) == 1
    assert "Game Pass" in bot.messages[0]["text"] and "2" in bot.messages[0]["text"]
    buy(product, email="a4@x.example")  # 1 left: still low, no second alert
    assert services.notifications_stock_check() == []  # the periodic check neither
    assert len(bot.messages) == 1

    add_keys(product=product, count=5, prefix="RESTOCK")  # 6 available: re-armed at the next check
    stock_adjust(product_id=product.id, delta=5)
    services.notifications_stock_check()
    alert = StockAlert.objects.get(product=product)
    assert not alert.is_low
    assert len(bot.messages) == 1
    for i in range(4):
        buy(product, email=f"b{i}@x.example")  # 6 → 2: the second crossing
    assert len(bot.messages) == 2
    assert StockAlert.objects.get(product=product).crossings == 2
    assert Delivery.objects.filter(event="stock.low").count() == 2


def test_the_periodic_check_uses_the_shop_threshold_and_skips_products_without_keys(celery_eager):
    notifications_configure(email=True, low_stock_threshold=3)
    low = product_with_keys(keys=3, warm=False, title="Low one")
    product_with_keys(keys=10, warm=False)
    product_with_keys(keys=0, warm=False)  # no key pool: nothing to run low on
    assert tasks.stock_low_check_task.delay().get() == [low.id]
    assert tasks.stock_low_check_task.delay().get() == []
    [alert_mail] = merchant_mails()
    assert "Low one" in alert_mail.subject


def test_reusable_key_and_manual_products_are_checked_by_their_stock_number(celery_eager):
    """A product's kind decides what is counted: the stock number of a
    reusable-key or manual product, the available keys of a pool product.
    Keys left over from before a product left the pool count for nothing."""
    notifications_configure(email=True, low_stock_threshold=3)
    reusable_low = product_reusable(stock=3, warm=False, title="Shared code")
    manual_low = product_manual(stock=1, warm=False, title="Top-up")
    product_manual(stock=10, warm=False)
    switched = product_reusable(stock=2, warm=False, title="Was a pool")
    add_keys(product=switched, count=50)  # old pool keys: not its stock any more
    plenty_of_old_keys = product_reusable(stock=40, warm=False)
    add_keys(product=plenty_of_old_keys, count=1)

    assert sorted(services.notifications_stock_check()) == sorted([reusable_low.id, manual_low.id, switched.id])
    assert StockAlert.objects.get(product=manual_low).last_available == 1
    subjects = " ".join(m.subject for m in merchant_mails())
    assert "Shared code" in subjects and "Top-up" in subjects and "Was a pool" in subjects
    assert services.notifications_stock_check() == []  # once per crossing

    product_stock_set(product_id=manual_low.id, quantity=20)  # a restock re-arms it
    services.notifications_stock_check()
    assert not StockAlert.objects.get(product=manual_low).is_low


def test_a_reusable_key_delivery_that_takes_the_number_to_the_threshold_announces_it(celery_eager, bot):
    notifications_configure(telegram=True, notify_paid_orders=False, low_stock_threshold=2)
    product = product_reusable(stock=4, title="Shared code", per_buyer_limit=5)
    buy(product, email="r1@x.example")  # 3 left
    assert bot.messages == []
    buy(product, email="r2@x.example")  # 2 left: crosses
    assert len(bot.messages) == 1 and "Shared code" in bot.messages[0]["text"]


def test_nothing_is_published_for_a_paid_order_when_no_channel_is_on(celery_eager, monkeypatch):
    published = []
    monkeypatch.setattr(tasks.notify_order_paid_task, "delay", lambda *args: published.append(args))
    notifications_configure(notify_low_stock=False)  # every channel off
    order = buy(product_with_keys(keys=2))
    assert order.status == Order.Status.DELIVERED and published == []
    notifications_configure(email=True, notify_low_stock=False)
    order = buy(product_with_keys(keys=2))
    assert published == [(order.id,)]


def test_the_paid_order_message_carries_what_the_buyer_typed_in_the_products_fields(celery_eager, receiver, bot):
    notifications_configure(webhook_url=receiver.url + "/hook", telegram=True, notify_low_stock=False)
    product = product_with_keys(keys=3, title="Top-up 100")
    ProductInputField.objects.create(product=product, key="account_id", label_zh="游戏账号", label_en="Game account id")
    result = order_checkout(sku=product.sku, email="bob@buyer.example", quantity=1, fields={"account_id": "778899001"})
    persistence.order_persist_queued()
    pay(result.order_no, event_id=f"evt-{result.order_no}")

    payload = json.loads(receiver.requests[0]["body"])
    assert payload["data"]["field_account_id"] == "778899001"
    # The merchant's side speaks the shop's language (zh-hans here): the label they wrote.
    assert "游戏账号: 778899001" in bot.messages[0]["text"]
    # Stored only sealed, as on the order: not in the record's text or payload.
    [record] = Delivery.objects.filter(channel="webhook")
    assert "778899001" not in record.text + json.dumps(record.payload)
    assert "778899001" not in record.buyer_input_sealed
