"""The order poll off the hot path (issue 15): an unchanged order is answered
304 from the Redis status record with no database query and no session
write; every status transition changes the ETag; a missing record falls back
to MariaDB; the token is checked on the 304 path too; pollers never see an
older status after a newer one; clients are told when to poll again."""

import threading
import time
from contextlib import ExitStack
from decimal import Decimal
from unittest import mock

import pytest
from django.contrib.sessions.backends.base import SessionBase
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_redis import get_redis_connection

from apps.cardkeys.tests.factories import CardKeyFactory
from apps.orders import poll as poll_module
from apps.orders.models import Order
from apps.orders.poll import order_poll_check, order_poll_remember, poll_after_ms
from apps.orders.selectors import order_buyer_read
from apps.orders.services import fulfilment, payment, persistence
from apps.orders.services.cancel import order_cancel
from apps.orders.services.expiry import order_expire_due
from apps.orders.status_records import generation_key, order_status_etag, record_key
from apps.orders.tests.factories import OrderFactory
from apps.orders.tests.support import checkout, pay, product_with_keys
from apps.stock import overload
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import backlog_ratio_key

Status = Order.Status
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


@pytest.fixture(autouse=True)
def _no_backlog():
    """The poll's load figure is cached per process: start each test from none."""
    overload._load.update(at=float("-inf"), value=0.0)
    yield
    overload._load.update(at=float("-inf"), value=0.0)


@pytest.fixture
def no_worker_tasks():
    """Services publish tasks on commit; here nobody runs them (the test drives each step)."""
    with ExitStack() as stack:
        for task in (
            "apps.orders.tasks.fulfil_order_task",
            "apps.payments.tasks.refund_order_task",
            "apps.payments.tasks.payment_close_task",
            "apps.orders.tasks.send_order_keys_emails_task",
        ):
            stack.enter_context(mock.patch(f"{task}.delay"))
        yield


def _page_poll(client, order_no, token, etag=None):
    headers = {"HTTP_IF_NONE_MATCH": etag} if etag else {}
    return client.get(f"/orders/{order_no}/status?token={token}", **headers)


def _api_poll(client, order_no, token, etag=None):
    headers = {"HTTP_IF_NONE_MATCH": etag} if etag else {}
    return client.get(f"/api/v1/orders/{order_no}", HTTP_X_ORDER_TOKEN=token, **headers)


class _QueriesEverywhere:
    """Every query on every database alias (the primary and the replica)."""

    def __enter__(self):
        self.contexts = [CaptureQueriesContext(connections[alias]) for alias in connections]
        for context in self.contexts:
            context.__enter__()
        return self

    def __exit__(self, *exc):
        for context in self.contexts:
            context.__exit__(*exc)

    @property
    def queries(self) -> list[str]:
        return [q["sql"] for context in self.contexts for q in context.captured_queries]


@pytest.mark.parametrize("poll", [_page_poll, _api_poll], ids=["order page", "api"])
def test_an_unchanged_order_is_answered_304_without_a_query_or_a_session(poll):
    order, token = OrderFactory.create_with_token()
    client = Client()
    first = poll(client, order.order_no, token)
    assert first.status_code == 200 and first.json()["status"] == Status.AWAITING_PAYMENT
    etag = first["ETag"]
    assert etag == order_status_etag(Status.AWAITING_PAYMENT)
    assert first.json()["poll_after_ms"] == 2000 and first["Retry-After"] == "2"

    with (
        _QueriesEverywhere() as queries,
        mock.patch.object(SessionBase, "_get_session", side_effect=AssertionError("session read")),
    ):
        second = poll(client, order.order_no, token, etag)
    assert second.status_code == 304, second.content
    assert queries.queries == []
    assert second.cookies == {} and "Set-Cookie" not in second.headers
    assert second["ETag"] == etag and second["Retry-After"] == "2"
    assert "no-store" in second["Cache-Control"]
    assert second.content == b""


def test_the_etag_is_weak_and_either_form_is_answered_304():
    """The 200's body varies with Accept-Language (the product's title) and
    the shop's configuration, not only with the status the tag names: a weak
    tag (RFC 9110 8.8.1). The comparison is weak, so a client that strips the
    W/ still gets its 304."""
    order, token = OrderFactory.create_with_token()
    client = Client()
    for poll in (_page_poll, _api_poll):
        etag = poll(client, order.order_no, token)["ETag"]
        assert etag == 'W/"s1-awaiting_payment"'
        assert poll(client, order.order_no, token, etag).status_code == 304
        assert poll(client, order.order_no, token, etag.removeprefix("W/")).status_code == 304
        assert poll(client, order.order_no, token, f'"other", {etag}').status_code == 304


def test_a_page_opened_through_the_email_lookup_always_reads_the_session_and_mariadb():
    """No token, only the session's lookup grant: never a 304 (the record
    authorises a token's hash, nothing else), as docs/architecture.md says."""
    from apps.orders.grants import order_grant_lookup

    order, token = OrderFactory.create_with_token()
    client = Client()
    session = client.session
    order_grant_lookup(session=session, order_no=order.order_no, email=order.buyer_email)
    session.save()
    etag = _page_poll(Client(), order.order_no, token)["ETag"]  # the token holder's poll stored the record
    for _ in range(2):
        with _QueriesEverywhere() as queries:
            response = client.get(f"/orders/{order.order_no}/status", HTTP_IF_NONE_MATCH=etag)
        assert response.status_code == 200 and response.json()["status"] == Status.AWAITING_PAYMENT
        assert queries.queries and response["ETag"] == etag


def test_with_a_replica_and_a_fresh_write_mark_the_304_still_costs_nothing(settings):
    """The read-your-writes middleware (a replica configured, a browser that
    just paid) reads its signed mark and writes nothing on a poll."""
    from django.core import signing
    from django.test import RequestFactory

    from apps.core.middleware import WROTE_COOKIE, WROTE_SALT, _wrote_recently

    settings.REPLICA_ENABLED = True
    order, token = OrderFactory.create_with_token()
    client = Client()
    mark = signing.get_cookie_signer(salt=WROTE_COOKIE + WROTE_SALT).sign("1")
    assert _wrote_recently(RequestFactory().get("/", HTTP_COOKIE=f"{WROTE_COOKIE}={mark}"))
    client.cookies[WROTE_COOKIE] = mark
    etag = _page_poll(client, order.order_no, token)["ETag"]
    with _QueriesEverywhere() as queries:
        response = _page_poll(client, order.order_no, token, etag)
    assert response.status_code == 304 and queries.queries == [] and response.cookies == {}


@pytest.mark.parametrize("poll", [_page_poll, _api_poll], ids=["order page", "api"])
def test_a_wrong_token_gets_404_also_with_the_right_etag(poll):
    order, token = OrderFactory.create_with_token()
    client = Client()
    etag = poll(client, order.order_no, token)["ETag"]
    assert poll(client, order.order_no, token, etag).status_code == 304  # the record is there

    wrong = poll(Client(), order.order_no, "not-the-token", etag)
    unknown = poll(Client(), f"261122-{order.product_id}-NOSUCHORDER0", "not-the-token", etag)
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json() == unknown.json() and wrong.json()["error"] == "order_not_found"
    assert "ETag" not in wrong.headers
    # And no token at all (the page's session grant is another browser's).
    assert Client().get(f"/orders/{order.order_no}/status", HTTP_IF_NONE_MATCH=etag).status_code == 404


def test_each_transition_changes_the_etag_and_keys_come_only_from_mariadb(no_worker_tasks):
    product = product_with_keys(keys=2)
    result = checkout(product)
    client = Client()
    no, token = result.order_no, result.access_token

    queued = _api_poll(client, no, token)
    assert queued.json()["status"] == Status.QUEUED
    # Queued lives in the gate: no record, so never a 304 (a poll reads the reservation again).
    assert _api_poll(client, no, token, queued["ETag"]).status_code == 200
    persistence.order_persist_queued(product_ids=[product.id])

    seen = []
    etag = queued["ETag"]

    def step(expected: str) -> None:
        nonlocal etag
        response = _api_poll(client, no, token, etag)
        assert response.status_code == 200, f"{expected}: still {response.status_code} for {etag}"
        assert response.json()["status"] == expected and response["ETag"] != etag
        etag = response["ETag"]
        seen.append(response.json())
        assert _api_poll(client, no, token, etag).status_code == 304

    step(Status.AWAITING_PAYMENT)
    pay(no)
    step(Status.PAID)
    assert "keys" not in seen[-1]
    order = Order.objects.get(order_no=no)
    fulfilment.order_fulfil(order_id=order.id)
    step(Status.DELIVERED)
    assert seen[-1]["keys"] == [f"{product.sku}-KEY-000000"]
    payment.order_refund_start(order_ids=[order.id], reason="buyer asked")
    step(Status.REFUND_PENDING)
    payment.order_mark_refunded(
        order_no=no, provider="sandbox", event_id="refund-1", amount=order.amount, currency=order.currency
    )
    step(Status.REFUNDED)
    assert "keys" not in seen[-1]


def test_expiry_cancel_and_attention_change_the_etag(no_worker_tasks, settings):
    settings.PAYMENT_QUERY_GRACE_SECONDS = 0
    product = product_with_keys(keys=3)
    orders = []
    for i in range(3):
        result = checkout(product, email=f"b{i}@example.com")
        orders.append((result.order_no, result.access_token))
    persistence.order_persist_queued(product_ids=[product.id])
    client = Client()
    etags = {no: _page_poll(client, no, token)["ETag"] for no, token in orders}
    assert all(_page_poll(client, no, token, etags[no]).status_code == 304 for no, token in orders)
    (expiring, _), (cancelled, _), (attention, _) = orders

    Order.objects.filter(order_no=expiring).update(reserved_until=Order.objects.get(order_no=expiring).created_at)
    assert order_expire_due() == 1
    order_cancel(order_no=cancelled)
    pay(attention)
    attention_id = Order.objects.get(order_no=attention).id
    fulfilment.order_fulfilment_failed(order_id=attention_id, reason="test: a worker failed")

    answers = {no: _page_poll(client, no, token, etags[no]) for no, token in orders}
    assert {no: (r.status_code, r.json()["status"]) for no, r in answers.items()} == {
        expiring: (200, Status.EXPIRED),
        cancelled: (200, Status.CANCELLED),
        attention: (200, Status.NEEDS_ATTENTION),
    }
    # The operator's retry sends it back to paid: a new answer again.
    etag = answers[attention]["ETag"]
    assert _page_poll(client, attention, orders[2][1], etag).status_code == 304
    with mock.patch("apps.stock.services.stock_rereserve_held", return_value=1):
        assert fulfilment.order_fulfilment_retry(order_ids=[attention_id]) == 1
    again = _page_poll(client, attention, orders[2][1], etag)
    assert again.status_code == 200 and again.json()["status"] == Status.PAID


def test_a_manual_delivery_changes_the_etag_and_a_paid_manual_order_is_polled_slowly(no_worker_tasks):
    from apps.orders.services.manual_delivery import order_deliver_manually
    from apps.orders.tests.delivery_support import product_manual

    product = product_manual(stock=3)
    result = checkout(product)
    persistence.order_persist_queued(product_ids=[product.id])
    pay(result.order_no)
    client = Client()
    paid = _api_poll(client, result.order_no, result.access_token)
    assert paid.json()["status"] == Status.PAID and paid.json()["poll_after_ms"] == 10000
    assert _api_poll(client, result.order_no, result.access_token, paid["ETag"]).status_code == 304

    order_deliver_manually(
        order_id=Order.objects.get(order_no=result.order_no).id, content="CODE-BY-HAND", by_user=None
    )
    delivered = _api_poll(client, result.order_no, result.access_token, paid["ETag"])
    assert delivered.status_code == 200 and delivered.json()["delivered_content"] == "CODE-BY-HAND"


def test_without_the_cache_redis_a_poll_is_answered_from_mariadb(monkeypatch):
    """The record is a cache: Redis unreachable costs speed, never an answer."""
    import redis

    from apps.orders import status_records

    order, token = OrderFactory.create_with_token()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(status_records, "_redis", lambda: dead)
    etag = order_status_etag(Status.AWAITING_PAYMENT)
    for poll in (_page_poll, _api_poll):
        response = poll(Client(), order.order_no, token, etag)
        assert response.status_code == 200 and response.json()["status"] == Status.AWAITING_PAYMENT
    status_records.order_status_records_drop_rollback_unsafe(order_nos=[order.order_no])  # logs, never raises


def test_a_row_read_from_the_replica_is_never_stored():
    """It may be older than a drop already done (the replica lags)."""
    from apps.orders.selectors import order_status_record

    order = Order.objects.select_related("product").get(pk=OrderFactory().pk)
    assert order_status_record(order) is not None
    replica_copy = Order.objects.using("replica").select_related("product").get(pk=order.pk)
    assert order_status_record(replica_copy) is None


def test_a_missing_record_falls_back_to_mariadb_and_is_written_again():
    order, token = OrderFactory.create_with_token(status=Status.DELIVERED)
    CardKeyFactory(sold=True, order=order, product=order.product, secret="KEY-FROM-MARIADB")
    client = Client()
    etag = _page_poll(client, order.order_no, token)["ETag"]
    get_redis_connection("default").delete(record_key(order.order_no))  # evicted, or Redis restarted

    with _QueriesEverywhere() as queries:
        response = _page_poll(client, order.order_no, token, etag)
    assert response.status_code == 200 and response.json()["keys"] == ["KEY-FROM-MARIADB"]
    assert queries.queries  # it asked MariaDB
    assert _page_poll(client, order.order_no, token, etag).status_code == 304  # and remembered


def test_a_poll_that_read_before_a_commit_does_not_store_its_old_status(no_worker_tasks):
    """The cache-aside race: the poll reads the generation and the row (still
    awaiting payment), the payment commits and drops the record, then the
    poll stores what it read. It must store nothing."""
    order, token = OrderFactory.create_with_token()
    check = order_poll_check(order_no=order.order_no, token=token, if_none_match=None)
    before = order_buyer_read(order_no=order.order_no, token=token)
    assert before.record.status == Status.AWAITING_PAYMENT

    pay(order.order_no)  # commits, then drops the record and moves the generation on
    order_poll_remember(check=check, record=before.record)

    stale = _page_poll(Client(), order.order_no, token, order_status_etag(Status.AWAITING_PAYMENT))
    assert stale.status_code == 200 and stale.json()["status"] == Status.PAID


def test_a_stalled_poll_does_not_store_its_old_status_after_the_record_lifetime(no_worker_tasks, settings):
    """ABA: the generation must outlive the record by far. A poll that read
    no generation, then stalled past the record's lifetime while a payment
    committed and dropped, must still find the generation moved on."""
    settings.ORDER_STATUS_RECORD_SECONDS = 1
    order, token = OrderFactory.create_with_token()
    check = order_poll_check(order_no=order.order_no, token=token, if_none_match=None)
    assert check.read is not None and check.read.gen == ""
    before = order_buyer_read(order_no=order.order_no, token=token)
    pay(order.order_no)
    time.sleep(1.5)  # the poll stalls past the record's lifetime
    order_poll_remember(check=check, record=before.record)

    stale = _page_poll(Client(), order.order_no, token, order_status_etag(Status.AWAITING_PAYMENT))
    assert stale.status_code == 200 and stale.json()["status"] == Status.PAID
    redis = get_redis_connection("default")
    assert redis.ttl(record_key(order.order_no)) <= 1
    assert redis.ttl(generation_key(order.order_no)) >= 10 * settings.ORDER_STATUS_RECORD_SECONDS


def test_a_drop_is_one_atomic_script_for_many_orders():
    """INCR the generation, DEL the record, renew the generation's lifetime:
    one EVALSHA, so no reader sees the record gone with the generation unmoved."""
    from apps.orders import status_records

    orders = [OrderFactory.create_with_token() for _ in range(2)]
    client = Client()
    for order, token in orders:
        _page_poll(client, order.order_no, token)  # stores each record
    redis = get_redis_connection("default")
    assert all(redis.exists(record_key(order.order_no)) for order, _ in orders)
    sent = []
    real = redis.execute_command

    def spy(*args, **options):
        sent.append(args[0])
        return real(*args, **options)

    with mock.patch.object(redis, "execute_command", side_effect=spy):
        status_records.order_status_records_drop_rollback_unsafe(order_nos=[o.order_no for o, _ in orders])
    assert sent and set(sent) <= {"EVALSHA", "EVAL", "SCRIPT LOAD"}, sent
    for order, _ in orders:
        assert not redis.exists(record_key(order.order_no))
        assert redis.get(generation_key(order.order_no)) == b"1"


def test_a_failing_after_commit_callback_skips_no_drop():
    """Django stops at the first after-commit callback that raises: the
    operator's refund of two orders, the first one's task publish failing
    (the broker down), must still drop both orders' records."""

    class BrokerDown(Exception):
        pass

    orders = [OrderFactory.create_with_token(status=Status.DELIVERED) for _ in range(2)]
    client = Client()
    etags = {order.order_no: _page_poll(client, order.order_no, token)["ETag"] for order, token in orders}
    assert all(_page_poll(client, o.order_no, t, etags[o.order_no]).status_code == 304 for o, t in orders)

    with (
        mock.patch("apps.payments.tasks.refund_order_task.delay", side_effect=BrokerDown),
        pytest.raises(BrokerDown),  # the publish's own failure still reaches the caller
    ):
        payment.order_refund_start(order_ids=[o.id for o, _ in orders], reason="buyer asked")

    for order, token in orders:
        answer = _page_poll(client, order.order_no, token, etags[order.order_no])
        assert answer.status_code == 200 and answer.json()["status"] == Status.REFUND_PENDING, order.order_no


def test_a_drop_runs_once_per_transaction_and_never_raises(monkeypatch):
    """All the orders a transaction moves are dropped in one round trip, by a
    robust callback: a drop that fails is logged, never raised to a writer."""
    from django.db import transaction

    from apps.orders import status_records

    calls = []
    monkeypatch.setattr(status_records, "_drop_now", lambda numbers: calls.append(list(numbers)) or 1 / 0)
    with transaction.atomic():
        status_records.order_status_records_drop_on_commit(order_nos=["A"])
        transaction.on_commit(lambda: calls.append("later work"))
        status_records.order_status_records_drop_on_commit(order_nos=["B", ""])
    assert calls == [["A", "B"], "later work"]


def test_a_black_holed_cache_redis_holds_up_no_fulfilment_work(monkeypatch):
    """The cache Redis accepts connections and never answers: the fulfilment
    still ends the reservations and queues the mails before the drop waits,
    the drop's timeout is logged, never raised, and the next drops of that
    process skip the wait for a few seconds (their records' TTL bounds them)."""
    import socket

    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from apps.orders import status_records

    silent = socket.create_server(("127.0.0.1", 0), backlog=16)  # accepts (the kernel does), never answers
    dead = redis.Redis(
        port=silent.getsockname()[1], socket_connect_timeout=0.3, socket_timeout=0.3, retry=Retry(NoBackoff(), 0)
    )
    monkeypatch.setattr(status_records, "_redis", lambda: dead)
    steps: list[str] = []
    real_drop, real_finish = status_records._drop_now, fulfilment.stock.stock_reservations_finish

    def drop(numbers):
        steps.append("drop")
        started = time.monotonic()
        try:
            real_drop(numbers)
        finally:
            steps.append(f"waited {time.monotonic() - started >= 0.25}")

    monkeypatch.setattr(status_records, "_drop_now", drop)
    monkeypatch.setattr(
        fulfilment.stock, "stock_reservations_finish", lambda **kw: steps.append("finish") or real_finish(**kw)
    )
    product = product_with_keys(keys=2)
    results = [checkout(product, email=f"h{i}@example.com") for i in range(2)]
    persistence.order_persist_queued(product_ids=[product.id])
    with (
        mock.patch("apps.orders.tasks.fulfil_order_task.delay"),
        mock.patch("apps.orders.tasks.send_order_keys_emails_task.delay", side_effect=lambda ids: steps.append("mail")),
    ):
        pay(results[0].order_no, event_id="h0")
        steps.clear()  # the payment's drop failed (and paused the drops); resume for the fulfilment
        status_records.order_status_drops_resume()
        fulfilment.order_fulfil(order_id=Order.objects.get(order_no=results[0].order_no).id)
        assert steps == ["finish", "mail", "drop", "waited True"], steps
        assert Order.objects.get(order_no=results[0].order_no).status == Status.DELIVERED
        steps.clear()
        started = time.monotonic()
        pay(results[1].order_no, event_id="h1")  # its drop is skipped: no wait
        assert "drop" not in steps and time.monotonic() - started < 5
    silent.close()
    assert Order.objects.get(order_no=results[1].order_no).status == Status.PAID


RANK = {Status.AWAITING_PAYMENT: 0, Status.PAID: 1, Status.DELIVERED: 2}


def test_pollers_never_see_an_older_status_after_a_newer_one(no_worker_tasks, settings):
    """Six pollers through payment and delivery: no status goes backwards, and
    every one ends at `delivered` with the key. A stale record (a drop missing)
    answers 304 to the older ETag until it expires (60 s), so the deadline is
    checked on every answer, 304s included, and is well under that lifetime."""
    product = product_with_keys(keys=1)
    result = checkout(product)
    persistence.order_persist_queued(product_ids=[product.id])
    no, token = result.order_no, result.access_token
    key = f"{product.sku}-KEY-000000"
    stop = threading.Event()
    errors: list[str] = []
    finals: list[tuple[str | None, list | None]] = []
    counts = {"200": 0, "304": 0}

    def poller():
        client, etag, status, keys, statuses = Client(), None, None, None, []
        try:
            while not (stop.is_set() and status == Status.DELIVERED):
                if time.monotonic() > deadline:
                    errors.append(f"never saw delivered: {statuses}")
                    break
                response = _page_poll(client, no, token, etag)
                if response.status_code == 304:
                    counts["304"] += 1
                    continue
                counts["200"] += 1
                body = response.json()
                if status is not None and RANK[body["status"]] < RANK[status]:
                    errors.append(f"{status} then {body['status']}")
                status, etag, keys = body["status"], response["ETag"], body.get("keys")
                statuses.append(status)
        except Exception as exc:  # an assertion inside a thread would vanish
            errors.append(repr(exc))
        finally:
            finals.append((status, keys))
            connection.close()

    patience = 20
    assert patience < settings.ORDER_STATUS_RECORD_SECONDS  # a stale record would outlast it
    deadline = time.monotonic() + patience
    threads = [threading.Thread(target=poller) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    pay(no)
    time.sleep(0.3)
    fulfilment.order_fulfil(order_id=Order.objects.get(order_no=no).id)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not [t for t in threads if t.is_alive()], "a poller is still running"
    assert not errors, errors
    assert finals == [(Status.DELIVERED, [key])] * len(threads), finals
    assert counts["304"] > counts["200"] > 0


def test_poll_after_grows_with_the_backlog_and_the_order_age(settings):
    now = time.time()
    fresh = poll_after_ms(status=Status.AWAITING_PAYMENT, placed_at=now, manual=False, now=now)
    old = poll_after_ms(status=Status.AWAITING_PAYMENT, placed_at=now - 10 * 60, manual=False, now=now)
    middle = poll_after_ms(status=Status.AWAITING_PAYMENT, placed_at=now - 4 * 60, manual=False, now=now)
    assert fresh == 2000 and middle == 2000 * 1.5 and old == 2000 * 2  # a quarter per minute past 2, up to 2×
    assert poll_after_ms(status=Status.PAID, placed_at=now, manual=True, now=now) == 10000
    assert poll_after_ms(status=Status.PAID, placed_at=now, manual=False, now=now) == 1000

    # The overload check's measure, as beat writes it, read at most every 2 s per process.
    stock_redis().set(backlog_ratio_key(), "0.5")
    overload._load.update(at=float("-inf"))
    assert poll_after_ms(status=Status.AWAITING_PAYMENT, placed_at=now, manual=False, now=now) == 5000
    stock_redis().set(backlog_ratio_key(), "3")  # past the limit: checkout is paused
    overload._load.update(at=float("-inf"))
    assert poll_after_ms(status=Status.AWAITING_PAYMENT, placed_at=now, manual=False, now=now) == 8000
    assert poll_after_ms(status=Status.EXPIRED, placed_at=now, manual=False, now=now) == settings.ORDER_POLL_MAX_MS


def test_the_overload_check_publishes_the_backlog_ratio(settings):
    settings.FULFIL_BACKLOG_LIMIT = 4
    product = product_with_keys(keys=2)
    with mock.patch("apps.orders.tasks.fulfil_order_task.delay"):
        for i in range(2):
            result = checkout(product, email=f"r{i}@example.com")
            persistence.order_persist_queued(product_ids=[product.id])
            pay(result.order_no, event_id=f"e{i}")
    with mock.patch.object(overload, "broker_queue_depth", return_value=0):
        overload.overload_check()
    assert float(stock_redis().get(backlog_ratio_key())) == pytest.approx(0.5)
    assert overload.shop_backlog_ratio() == pytest.approx(0.5)
    order = Order.objects.filter(product=product).first()
    assert poll_module.poll_after_ms(status=Status.PAID, placed_at=time.time(), manual=False) == 2500
    assert order.amount == Decimal("9.90")


@pytest.mark.browser
def test_the_order_page_polls_conditionally_backs_off_with_jitter_and_shows_the_keys(live_server, browser, settings):
    """In headless Chromium: the page sends If-None-Match and gets 304s; it
    follows the server's interval (here capped at 500 ms, not the page's own
    2 s), stretches it ×1.5 per unchanged answer up to ×3, and draws each wait
    from ±20 % (two pages whose Math.random is pinned: the middle of the range
    and its bottom); payment and delivery still show the key, then it stops."""
    from playwright.sync_api import expect

    settings.ORDER_POLL_MAX_MS = 500
    product = product_with_keys(keys=1)
    result = checkout(product)
    persistence.order_persist_queued(product_ids=[product.id])
    context = browser.new_context(locale="en-US")

    def open_page(random_value: float):
        polls: list[tuple[float, str | None, int]] = []
        page = context.new_page()
        page.add_init_script(f"Math.random = () => {random_value};")
        # The waits the page asks for, as it asks for them: exact figures, not
        # wall-clock gaps that a loaded machine stretches.
        page.add_init_script(
            """
            window.__pollDelays = [];
            const realSetTimeout = window.setTimeout;
            window.setTimeout = function (fn, delay, ...rest) {
              if (typeof fn === "function" && fn.name === "poll") window.__pollDelays.push(delay);
              return realSetTimeout.call(window, fn, delay, ...rest);
            };
            """
        )
        page.on(
            "response",
            lambda r: (
                polls.append((time.monotonic(), r.request.headers.get("if-none-match"), r.status))
                if "/status" in r.url
                else None
            ),
        )
        page.goto(f"{live_server.url}/orders/{result.order_no}?token={result.access_token}")
        return page, polls

    middle, middle_polls = open_page(0.5)
    bottom, bottom_polls = open_page(0.0)
    for _ in range(300):  # about 5.4 s of waits; a loaded machine may take longer
        if len(middle_polls) >= 5 and len(bottom_polls) >= 5:
            break
        middle.wait_for_timeout(100)

    def delays_and_gaps(page, polls):
        assert len(polls) >= 5, polls
        assert all(tag == order_status_etag(Status.AWAITING_PAYMENT) for _, tag, _ in polls)
        assert [status for _, _, status in polls[1:5]] == [304] * 4, polls
        gaps = [b[0] - a[0] for a, b in zip(polls[:5], polls[1:5], strict=False)]
        return page.evaluate("window.__pollDelays")[:5], gaps

    # The first wait is the rendered poll_after_ms (500 ms: ORDER_POLL_MAX_MS),
    # then ×1.5 per unchanged answer (the first poll's 200 with the same
    # status counts), up to ×3.
    schedule = [500, 750, 1125, 1500, 1500]  # the 5th answer may not be handled yet: five waits
    middle_delays, middle_gaps = delays_and_gaps(middle, middle_polls)
    bottom_delays, bottom_gaps = delays_and_gaps(bottom, bottom_polls)
    # Rendering a page stores no record: the order's first poll (whichever
    # page's) is a 200 that stores it; every other one is a 304.
    first_polls = sorted(middle_polls[:5] + bottom_polls[:5])
    assert [status for _, _, status in first_polls] == [200] + [304] * 9, first_polls
    assert middle_delays == schedule, middle_delays
    # Jitter: Math.random() at 0 draws the bottom of ±20 %.
    assert bottom_delays == [round(d * 0.8) for d in schedule], bottom_delays
    # And the page waited them: a timer never fires early (the machine's load
    # may only add to a gap, so there is no upper bound here).
    for delays, gaps in ((middle_delays, middle_gaps), (bottom_delays, bottom_gaps)):
        assert all(gap >= delay / 1000 - 0.02 for delay, gap in zip(delays[1:], gaps, strict=False)), (delays, gaps)
    bottom.close()

    with mock.patch("apps.orders.tasks.fulfil_order_task.delay"):
        pay(result.order_no)
    expect(middle.locator('[data-state="paid"]')).to_be_visible(timeout=5000)
    fulfilment.order_fulfil(order_id=Order.objects.get(order_no=result.order_no).id)
    expect(middle.locator("[data-keys] code")).to_have_text([f"{product.sku}-KEY-000000"], timeout=5000)
    count = len(middle_polls)
    middle.wait_for_timeout(2000)
    assert len(middle_polls) == count  # delivered is final: the page stopped polling
