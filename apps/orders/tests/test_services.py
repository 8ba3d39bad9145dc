import threading
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.conf import settings
from django.core import mail
from django.db import connection, transaction

from apps.cardkeys.models import CardKey
from apps.orders.exceptions import (
    InvalidInput,
    LimitExceeded,
    OrderNotFound,
    OrderPending,
    PaymentMismatch,
    ProductNotFound,
    SaleEnded,
    SaleNotStarted,
    SalePaused,
    SoldOut,
)
from apps.orders.models import Order
from apps.orders.selectors import order_snapshot_get
from apps.orders.services import expiry, fulfilment, payment, persistence
from apps.orders.services.checkout import order_checkout
from apps.payments.models import PaymentEvent
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key
from apps.stock.selectors import stock_remaining

from .support import product_with_keys, redis_lose_product

pytestmark = pytest.mark.django_db(transaction=True)


def checkout(product, email="buyer@example.com", quantity=1, key=None):
    return order_checkout(sku=product.sku, email=email, quantity=quantity, idempotency_key=key)


def pay(order_no, event_id="evt-1", amount=None):
    order = Order.objects.get(order_no=order_no)
    return payment.order_mark_paid(
        order_no=order_no,
        provider="sandbox",
        event_id=event_id,
        amount=order.amount if amount is None else amount,
        currency=order.currency,
    )


def test_checkout_reserves_in_redis_only_then_persists(django_assert_num_queries):
    from django.db import connections

    from apps.catalog.selectors import product_info_get

    product = product_with_keys(keys=3)
    product_info_get(sku=product.sku)  # the page view cached it
    with django_assert_num_queries(0), django_assert_num_queries(0, connection=connections["replica"]):
        result = checkout(product, quantity=2)
    assert result.status == "queued"
    assert stock_remaining(product_id=product.id) == 1
    assert not Order.objects.filter(order_no=result.order_no).exists()
    snapshot = order_snapshot_get(order_no=result.order_no, token=result.access_token)
    assert snapshot["status"] == "queued" and snapshot["amount"] == "19.80"

    assert persistence.order_persist_queued() == 1
    order = Order.objects.get(order_no=result.order_no)
    assert order.status == Order.Status.AWAITING_PAYMENT
    assert order.amount == Decimal("19.80") and order.buyer_email == "buyer@example.com"
    # Persisting again (a redelivered batch) changes nothing.
    assert persistence.order_persist_reservations(product_id=product.id, reservations=[]) == 0
    assert persistence.order_persist_queued() == 0
    assert Order.objects.count() == 1


def test_full_path_delivers_distinct_keys_and_mails_them(celery_eager):
    product = product_with_keys(keys=4)
    result = checkout(product, quantity=2)
    persistence.order_persist_queued()
    pay(result.order_no)
    order = Order.objects.get(order_no=result.order_no)
    assert order.status == Order.Status.DELIVERED
    keys = CardKey.objects.filter(order=order)
    assert keys.count() == 2 and {k.status for k in keys} == {"sold"}
    snapshot = order_snapshot_get(order_no=result.order_no, token=result.access_token)
    assert snapshot["status"] == "delivered" and len(set(snapshot["keys"])) == 2
    assert len(mail.outbox) == 1 and all(k in mail.outbox[0].body for k in snapshot["keys"])
    # Fulfilment again: nothing changes.
    assert fulfilment.order_fulfil(order_id=order.id).delivered == []
    assert CardKey.objects.filter(status="sold").count() == 2


def test_wrong_token_sees_nothing():
    product = product_with_keys(keys=1)
    result = checkout(product)
    assert order_snapshot_get(order_no=result.order_no, token="nope") is None
    persistence.order_persist_queued()
    assert order_snapshot_get(order_no=result.order_no, token="") is None
    assert order_snapshot_get(order_no="bogus", token=result.access_token) is None


@pytest.mark.parametrize(
    ("email", "quantity", "field"),
    [
        ("not-an-email", 1, "email"),
        ("a" * 250 + "@b.co", 1, "email"),
        ("a@b.co", 0, "quantity"),
        ("a@b.co", "two", "quantity"),
        ("a@b.co", 1.5, "quantity"),
        ("a@b.co", True, "quantity"),
        ("a@b.co", None, "quantity"),
        ("a@b.co", 9, "quantity"),
    ],
)
def test_bad_input_is_refused_and_reserves_nothing(email, quantity, field):
    product = product_with_keys(keys=10, max_per_order=5)
    with pytest.raises(InvalidInput) as caught:
        order_checkout(sku=product.sku, email=email, quantity=quantity)
    assert field in caught.value.extra["fields"]
    assert stock_remaining(product_id=product.id) == 10


def test_unknown_or_inactive_product():
    with pytest.raises(ProductNotFound):
        order_checkout(sku="nope", email="a@b.co", quantity=1)
    product = product_with_keys(keys=1, is_active=False)
    with pytest.raises(ProductNotFound):
        checkout(product)


def test_sold_out_and_limit():
    product = product_with_keys(keys=3, per_buyer_limit=2)
    checkout(product, email="A@x.com ", quantity=2)
    with pytest.raises(LimitExceeded):
        checkout(product, email="a@x.com")  # same buyer after normalising
    checkout(product, email="b@x.com")
    with pytest.raises(SoldOut):
        checkout(product, email="c@x.com")


def test_sale_window():
    from django.utils import timezone

    soon = product_with_keys(keys=1, sale_starts_at=timezone.now() + timezone.timedelta(hours=1))
    with pytest.raises(SaleNotStarted):
        checkout(soon)
    over = product_with_keys(keys=1, sale_ends_at=timezone.now() - timezone.timedelta(seconds=1))
    with pytest.raises(SaleEnded):
        checkout(over)


def test_not_warmed_pauses_and_warm_reopens():
    product = product_with_keys(keys=2, warm=False)
    with pytest.raises(SalePaused):
        checkout(product)
    from apps.stock.warmup import stock_warm

    assert stock_warm(product=product) == (True, 2)
    assert checkout(product).status == "queued"


def test_idempotency_key_returns_the_first_order():
    product = product_with_keys(keys=5)
    first = checkout(product, key="k-1")
    second = checkout(product, key="k-1")
    assert (second.order_no, second.access_token) == (first.order_no, first.access_token)
    assert stock_remaining(product_id=product.id) == 4
    other_buyer = checkout(product, email="other@x.com", key="k-1")
    assert other_buyer.order_no != first.order_no


def test_payment_checks_amount_and_dedupes(celery_eager):
    product = product_with_keys(keys=2)
    result = checkout(product)
    with pytest.raises(OrderPending):  # not persisted yet: the provider is asked to retry
        payment.order_mark_paid(
            order_no=result.order_no, provider="sandbox", event_id="e", amount=Decimal("9.90"), currency="CNY"
        )
    with pytest.raises(OrderNotFound):  # no such order, nor a reservation: never payable
        payment.order_mark_paid(
            order_no=f"261122-{product.id}-NOSUCHORDER0",
            provider="sandbox",
            event_id="e",
            amount=Decimal("9.90"),
            currency="CNY",
        )
    persistence.order_persist_queued()
    with pytest.raises(PaymentMismatch):
        pay(result.order_no, amount=Decimal("1.00"))
    assert not PaymentEvent.objects.exists()
    for _ in range(3):
        pay(result.order_no, event_id="evt-same")
    assert PaymentEvent.objects.count() == 1
    assert CardKey.objects.filter(status="sold").count() == 1


def test_shortage_goes_to_needs_attention_not_partial(celery_eager):
    product = product_with_keys(keys=2)
    result = checkout(product, quantity=2)
    persistence.order_persist_queued()
    first = CardKey.objects.filter(product=product).order_by("id").first()
    CardKey.objects.filter(id=first.id).update(status="void")  # drift: a key vanished
    pay(result.order_no)
    order = Order.objects.get(order_no=result.order_no)
    assert order.status == Order.Status.NEEDS_ATTENTION
    assert "ran short" in order.attention_reason
    assert CardKey.objects.filter(status="sold").count() == 0


def test_expiry_returns_stock_and_late_payment(celery_eager):
    from django.utils import timezone

    product = product_with_keys(keys=1, per_buyer_limit=1)
    result = checkout(product)
    persistence.order_persist_queued()
    assert stock_remaining(product_id=product.id) == 0
    later = timezone.now() + timezone.timedelta(hours=1)
    assert expiry.order_expire_due(now=later) == 1
    assert expiry.order_expire_due(now=later) == 0
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.EXPIRED
    assert stock_remaining(product_id=product.id) == 1
    # The buyer's slot is free again too.
    # A late payment with stock left: delivered.
    pay(result.order_no, event_id="late")
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.DELIVERED
    assert stock_remaining(product_id=product.id) == 0


def test_late_payment_without_stock_goes_to_refund_pending(celery_eager, monkeypatch):
    from django.utils import timezone

    refunds = []
    monkeypatch.setattr("apps.payments.tasks.refund_order_task.delay", lambda order_id: refunds.append(order_id))
    product = product_with_keys(keys=1)
    first = checkout(product, email="a@x.com")
    persistence.order_persist_queued()
    expiry.order_expire_due(now=timezone.now() + timezone.timedelta(hours=1))
    checkout(product, email="b@x.com")  # takes the returned key
    pay(first.order_no, event_id="late")
    order = Order.objects.get(order_no=first.order_no)
    assert order.status == Order.Status.REFUND_PENDING
    assert refunds == [order.id]


def test_rules_follow_a_merchant_edit():
    product = product_with_keys(keys=3, per_buyer_limit=5)
    product.per_buyer_limit = 1
    product.save()
    checkout(product)
    with pytest.raises(LimitExceeded):
        checkout(product)


def test_redis_lost_pauses_then_warm_restores_without_oversell(celery_eager):
    product = product_with_keys(keys=3)
    a = checkout(product, email="a@x.com")
    persistence.order_persist_queued()
    checkout(product, email="b@x.com")  # queued only: lost with Redis
    client = stock_redis()
    redis_lose_product(product)
    with pytest.raises(SalePaused):
        checkout(product, email="c@x.com")
    from apps.stock.warmup import stock_warm

    assert stock_warm(product=product) == (True, 2)  # 3 keys - a's reservation
    assert int(client.get(stock_key(product.id))) == 2
    pay(a.order_no)
    assert Order.objects.get(order_no=a.order_no).status == Order.Status.DELIVERED


def test_payment_between_expiry_commit_and_its_release_keeps_its_stock(celery_eager, monkeypatch):
    """Expiry commits, then a payment takes the order's row lock before the
    expiry's after-commit release has run: the late payment keeps the
    reservation, and the release that runs afterwards must not return it."""
    from django.utils import timezone

    product = product_with_keys(keys=2)
    result = checkout(product)
    persistence.order_persist_queued()
    held_back = []
    monkeypatch.setattr(expiry, "_release_unpaid_rollback_unsafe", held_back.append)
    expiry.order_expire_due(now=timezone.now() + timezone.timedelta(hours=1))
    pay(result.order_no, event_id="late-race")
    monkeypatch.undo()
    expiry._release_unpaid_rollback_unsafe(held_back[0])
    assert Order.objects.get(order_no=result.order_no).status == Order.Status.DELIVERED
    assert stock_remaining(product_id=product.id) == 1  # one key sold, one left: no phantom stock


def test_redis_holds_no_access_token():
    product = product_with_keys(keys=2)
    result = checkout(product, key="k-9")
    client = stock_redis()
    for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:*"):
        kind = client.type(key).decode()
        values = {
            "string": lambda name: [client.get(name)],
            "hash": lambda name: list(client.hgetall(name).values()),
            "list": lambda name: client.lrange(name, 0, -1),
        }.get(kind, lambda name: [])(key)
        assert not any(result.access_token.encode() in v for v in values), key
    assert checkout(product, key="k-9").access_token == result.access_token


def test_each_kind_of_work_has_its_own_queue():
    """Persistence must never wait behind a fulfilment or mail backlog."""
    from apps.orders import tasks
    from apps.payments import sandbox_server
    from apps.payments import tasks as payment_tasks
    from cardshop.celery import app

    def queue_of(task):
        return app.amqp.router.route({}, task.name)["queue"].name

    assert queue_of(tasks.persist_reservations_task) == "gate"
    assert queue_of(tasks.fulfil_order_task) == "fulfil"
    assert queue_of(tasks.send_order_keys_email_task) == "mail"
    assert queue_of(tasks.send_order_keys_emails_task) == "mail"
    assert queue_of(tasks.reconcile_task) == "gate"
    assert queue_of(payment_tasks.refund_order_task) == "payments"
    assert queue_of(sandbox_server.sandbox_notification_deliver_task) == "payments"
    consumed = {q.name for q in app.conf.task_queues}
    assert {"gate", "fulfil", "mail", "payments", "celery"} <= consumed


def test_one_fulfilment_transaction_serves_a_deep_queue_with_a_fixed_number_of_statements(
    monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr("apps.orders.tasks.fulfil_order_task.delay", lambda order_id: None)
    monkeypatch.setattr("apps.orders.tasks.send_order_keys_emails_task.delay", lambda order_ids: None)

    def paid_orders(product, count):
        for i in range(count):
            checkout(product, email=f"deep{product.id}-{i}@x.com", quantity=2)
        persistence.order_persist_queued()
        for order in Order.objects.filter(product=product):
            pay(order.order_no, event_id=f"e-{order.order_no}")
        return list(Order.objects.filter(product=product).order_by("id"))

    small = paid_orders(product_with_keys(keys=4, per_buyer_limit=2), 2)
    deep = paid_orders(product_with_keys(keys=40, per_buyer_limit=2), 20)
    with django_assert_max_num_queries(12):
        report = fulfilment.order_fulfil(order_id=deep[0].id, batch_size=50)
    # The batch also picked up the other product's paid orders.
    assert len(report.delivered) == 22 and report.short == []
    for order in small + deep:
        keys = CardKey.objects.filter(order=order)
        assert keys.count() == 2 and {k.product_id for k in keys} == {order.product_id}
    assert CardKey.objects.filter(status="sold").count() == 44
    assert Order.objects.filter(status="delivered").count() == 22


@contextmanager
def order_row_held_briefly(order_id: int, *, seconds: float = 0.5):
    """Another connection holds the order's row lock (as a duplicate payment
    notification being turned away does) from before the block starts until
    `seconds` later; the block runs meanwhile."""
    locked, release = threading.Event(), threading.Event()

    def duplicate_notification_holding_the_row():
        try:
            with transaction.atomic():
                Order.objects.select_for_update().get(id=order_id)
                locked.set()
                release.wait(5)
        finally:
            connection.close()

    holder = threading.Thread(target=duplicate_notification_holding_the_row)
    holder.start()
    assert locked.wait(5)
    timer = threading.Timer(seconds, release.set)
    timer.start()
    try:
        yield
    finally:
        release.set()
        holder.join(5)
    assert not holder.is_alive()


def test_fulfilment_waits_for_its_order_held_by_a_duplicate_notification(monkeypatch):
    """A duplicate payment notification locks the order row while it is turned
    away; the fulfilment task running at that moment must wait for the lock,
    not skip the order and leave it paid and undelivered."""
    monkeypatch.setattr("apps.orders.tasks.fulfil_order_task.delay", lambda order_id: None)
    monkeypatch.setattr("apps.orders.tasks.send_order_keys_emails_task.delay", lambda order_ids: None)
    product = product_with_keys(keys=1)
    result = checkout(product)
    persistence.order_persist_queued()
    pay(result.order_no, event_id="first")
    order = Order.objects.get(order_no=result.order_no)
    with order_row_held_briefly(order.id):
        report = fulfilment.order_fulfil(order_id=order.id)
    assert report.delivered == [order.order_no]
    assert Order.objects.get(id=order.id).status == Order.Status.DELIVERED


# --- Coalesced fulfilment requests


def paid_orders(product, count, *, quantity=1):
    for i in range(count):
        checkout(product, email=f"paid{product.id}-{i}@x.com", quantity=quantity)
    persistence.order_persist_queued()
    for order in Order.objects.filter(product=product, status=Order.Status.AWAITING_PAYMENT).order_by("id"):
        pay(order.order_no, event_id=f"e-{order.order_no}")
    return list(Order.objects.filter(product=product).order_by("id"))


@pytest.fixture
def published(monkeypatch):
    """Fulfilment tasks published (not run), and no mails."""
    sent = []
    monkeypatch.setattr("apps.orders.tasks.fulfil_order_task.delay", lambda order_id=None: sent.append(order_id))
    monkeypatch.setattr("apps.orders.tasks.send_order_keys_emails_task.delay", lambda order_ids: None)
    return sent


def test_payments_while_a_fulfilment_task_waits_publish_no_other_and_it_serves_them_all(published):
    product = product_with_keys(keys=30, per_buyer_limit=1)
    orders = paid_orders(product, 30)
    assert published == [orders[0].id]  # one task for thirty payments

    report = fulfilment.fulfilment_run(order_id=published[0])
    assert sorted(report.delivered) == sorted(o.order_no for o in orders)
    assert Order.objects.filter(status=Order.Status.DELIVERED).count() == 30
    assert CardKey.objects.filter(status="sold").values("order").distinct().count() == 30

    # The task cleared its mark as it started: the next payment publishes anew.
    late = paid_orders(product_with_keys(keys=1), 1)
    assert published == [orders[0].id, late[0].id]


def test_full_batches_ask_for_a_second_worker_and_the_asks_coalesce(published, settings):
    settings.FULFIL_BATCH_SIZE = 5
    orders = paid_orders(product_with_keys(keys=22, per_buyer_limit=1), 22)
    published.clear()
    report = fulfilment.fulfilment_run(order_id=orders[0].id)
    # Four full batches asked for help; the mark let only the first ask through.
    assert len(published) == 1
    assert len(report.delivered) == 22
    assert Order.objects.filter(status=Order.Status.DELIVERED).count() == 22


def test_a_lost_fulfilment_task_holds_back_later_payments_only_until_its_mark_expires(published, settings):
    from apps.orders.services.fulfilment import _fulfilment_flag_key

    settings.FULFIL_REQUEST_TTL_SECONDS = 7
    product = product_with_keys(keys=3, per_buyer_limit=1)
    first = paid_orders(product, 1)[0]
    assert published == [first.id]  # ... and that task is lost with its worker
    assert 0 < stock_redis().ttl(_fulfilment_flag_key()) <= 7
    checkout(product, email="second@x.com")
    persistence.order_persist_queued()
    second = Order.objects.get(buyer_email="second@x.com")
    pay(second.order_no, event_id="e-second")
    assert published == [first.id]
    stock_redis().delete(_fulfilment_flag_key())  # the mark expires
    checkout(product, email="third@x.com")
    persistence.order_persist_queued()
    third = Order.objects.get(buyer_email="third@x.com")
    pay(third.order_no, event_id="e-third")
    assert published == [first.id, third.id]
    # The new task serves the orders the lost one was standing for.
    fulfilment.fulfilment_run(order_id=third.id)
    assert set(Order.objects.values_list("status", flat=True)) == {Order.Status.DELIVERED}


def test_an_order_that_cannot_be_fulfilled_fails_alone_and_visibly(published, monkeypatch):
    """One order whose fulfilment raises must not fail every batch it is the
    first of: the batch is served one by one and that order goes to
    needs_attention with the error, for an operator to retry or refund."""
    from apps.cardkeys import claims

    orders = paid_orders(product_with_keys(keys=6, per_buyer_limit=1), 6)
    poison = orders[0]
    real_mark_sold = claims.cardkeys_mark_sold

    def mark_sold(*, assignments):
        if poison.id in assignments:
            raise ValueError("corrupt order")
        return real_mark_sold(assignments=assignments)

    monkeypatch.setattr(fulfilment, "cardkeys_mark_sold", mark_sold)
    # The task re-driven for that very order (reconcile's, say) too.
    report = fulfilment.fulfilment_run(order_id=poison.id)
    assert sorted(report.delivered) == sorted(o.order_no for o in orders[1:])
    assert report.short == [poison.order_no]
    poison.refresh_from_db()
    assert poison.status == Order.Status.NEEDS_ATTENTION
    assert "fulfilment failed: ValueError: corrupt order" in poison.attention_reason
    assert not CardKey.objects.filter(order=poison).exists()


def test_without_redis_to_ask_a_payment_publishes(published, monkeypatch):
    import redis

    order = paid_orders(product_with_keys(keys=1), 1)[0]
    published.clear()
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr("apps.orders.services.fulfilment.stock_redis", lambda: unreachable)
    fulfilment.fulfilment_request_on_commit(order_id=order.id)
    fulfilment.fulfilment_request_on_commit(order_id=order.id)
    assert published == [order.id, order.id]


def test_the_drain_waits_for_a_paid_order_held_by_a_duplicate_notification(published):
    """When only held orders are left the drain waits for them: the holder
    may be a duplicate notification being turned away, which delivers nothing."""
    orders = paid_orders(product_with_keys(keys=3, per_buyer_limit=1), 3)
    with order_row_held_briefly(orders[1].id):
        report = fulfilment.fulfilment_run(order_id=None)
    assert sorted(report.delivered) == sorted(o.order_no for o in orders)
    assert set(Order.objects.values_list("status", flat=True)) == {Order.Status.DELIVERED}


def test_two_workers_draining_at_once_deliver_every_order_its_own_keys(published, settings):
    """Real concurrency on MariaDB: two drains (threads, own connections) take
    disjoint batches; every paid order ends delivered with exactly its keys."""
    settings.FULFIL_BATCH_SIZE = 7
    products = [product_with_keys(keys=120, per_buyer_limit=2) for _ in range(2)]
    orders = [o for p in products for o in paid_orders(p, 60, quantity=2)]
    reports, errors = [], []

    def worker():
        try:
            reports.append(fulfilment.fulfilment_run(order_id=None))
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and errors == []
    delivered = [no for r in reports for no in r.delivered]
    assert sorted(delivered) == sorted(o.order_no for o in orders)  # each once, by one drain
    for order in orders:
        keys = CardKey.objects.filter(order=order)
        assert keys.count() == 2 and {k.product_id for k in keys} == {order.product_id}
    assert CardKey.objects.filter(status="sold").count() == 240


def test_a_batch_in_progress_leaves_the_other_paid_orders_to_a_second_worker(published):
    """A batch locks only the orders it takes: the query walks paid orders in
    id order on an index and stops at the batch size, instead of locking every
    paid order before sorting them (which would leave a second worker nothing)."""
    paid_orders(product_with_keys(keys=30, per_buyer_limit=1), 30)
    taken, release = [], threading.Event()
    locked = threading.Event()

    def first_worker_mid_batch():
        try:
            with transaction.atomic():
                taken.extend(fulfilment._orders_lock_for_fulfilment(order_id=None, batch_size=10))
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=first_worker_mid_batch)
    holder.start()
    try:
        assert locked.wait(10)
        with transaction.atomic():
            second = fulfilment._orders_lock_for_fulfilment(order_id=None, batch_size=10)
    finally:
        release.set()
        holder.join(10)
    assert not holder.is_alive()
    assert len(taken) == 10 and len(second) == 10
    assert not {o.id for o in taken} & {o.id for o in second}


def test_a_batch_mails_in_one_message_and_a_failing_mail_goes_on_alone(published, monkeypatch):
    from apps.orders import tasks

    orders = paid_orders(product_with_keys(keys=4, per_buyer_limit=1), 4)
    batches = []
    monkeypatch.setattr(tasks.send_order_keys_emails_task, "delay", lambda order_ids: batches.append(order_ids))
    fulfilment.fulfilment_run(order_id=None)
    assert batches == [[o.id for o in orders]]  # one message for the whole batch

    from apps.orders import mail as order_mail

    real_send = order_mail._keys_email_send
    bounced = orders[2]

    def send(order):
        if order.id == bounced.id:
            raise OSError("mail server refused the recipient")
        real_send(order)

    alone = []
    monkeypatch.setattr(order_mail, "_keys_email_send", send)
    monkeypatch.setattr(
        tasks.send_order_keys_email_task, "apply_async", lambda args, countdown: alone.append((args, countdown))
    )
    tasks.send_order_keys_emails_task.apply(args=[batches[0]], throw=True)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(o.buyer_email for o in orders if o.id != bounced.id)
    assert alone == [((bounced.id,), 5)]
    assert set(Order.objects.filter(keys_emailed_at__isnull=False).values_list("id", flat=True)) == {
        o.id for o in orders if o.id != bounced.id
    }


def test_a_mail_message_delivered_again_sends_no_mail_twice(published, monkeypatch):
    """A batch's mail message comes back when its worker died mid-batch (or a
    retry outlived the broker's visibility timeout): mails already sent are
    not sent again."""
    from apps.orders import tasks

    orders = paid_orders(product_with_keys(keys=3, per_buyer_limit=1), 3)
    fulfilment.fulfilment_run(order_id=None)
    ids = [o.id for o in orders]
    tasks.send_order_keys_emails_task.apply(args=[ids[:2]], throw=True)  # the worker died after two
    tasks.send_order_keys_emails_task.apply(args=[ids], throw=True)  # the whole message again
    assert sorted(m.to[0] for m in mail.outbox) == sorted(o.buyer_email for o in orders)
    assert Order.objects.filter(keys_emailed_at__isnull=False).count() == 3


def test_mail_retries_back_off_but_never_past_half_the_visibility_timeout(settings):
    from apps.orders.tasks import mail_retry_wait, send_order_keys_email_task

    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 300}
    waits = [mail_retry_wait(retries=n) for n in range(send_order_keys_email_task.max_retries + 1)]
    assert waits[:5] == [5, 10, 20, 40, 80]
    assert max(waits) == 150  # a longer countdown would be handed out twice
    assert mail_retry_wait(retries=0, retry_after=60) == 60  # an open breaker's wait
    assert 3600 < sum(waits) < 3 * 3600  # a mail outage of an hour or two is ridden out


def test_a_mail_message_that_meets_a_database_error_is_retried(published, monkeypatch):
    from unittest import mock

    from celery.exceptions import Retry
    from django.db import OperationalError

    from apps.orders import tasks

    def database_gone(*, order_ids):
        raise OperationalError(2006, "MySQL server has gone away")

    monkeypatch.setattr(tasks, "order_keys_emails_send", database_gone)
    with mock.patch.object(tasks.send_order_keys_emails_task, "retry", side_effect=Retry()) as retry:
        tasks.send_order_keys_emails_task.apply(args=[[1, 2]])
    assert isinstance(retry.call_args.kwargs["exc"], OperationalError)
