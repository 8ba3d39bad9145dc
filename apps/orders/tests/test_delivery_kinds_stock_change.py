"""A merchant changes the stock number of a reusable-key product while its
sale is live (review item 4). A decrease leaves the gate before the database
commits it, only if that many units are free; the warm-up and the drift check
never read the number before it commits. Real MariaDB, Redis and threads."""

import threading
import time

import pytest
from django.db import DatabaseError, connection, transaction
from redis.exceptions import ConnectionError as RedisConnectionError

from apps.catalog.models import Product
from apps.catalog.services import product_stock_set
from apps.core.errors import InvalidInput
from apps.orders.models import Order
from apps.orders.services import fulfilment, persistence
from apps.orders.services.checkout import order_checkout
from apps.orders.services.reconcile import reconcile_run
from apps.orders.tests.delivery_support import product_reusable, stock_number
from apps.orders.tests.support import pay, redis_lose_product
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key
from apps.stock.selectors import stock_remaining
from apps.stock.warmup import stock_gate_rebuild, stock_warm

pytestmark = pytest.mark.django_db(transaction=True)


def _thread(target, errors):
    def run():
        try:
            target()
        except Exception as exc:  # shown by the callers' assertions
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _checkouts_at_once(product, emails) -> list[str]:
    """One checkout per email, each in its own thread, released together;
    returns the outcome codes ("ok" or the refusal)."""
    barrier = threading.Barrier(len(emails))
    outcomes, errors = [], []

    def buy(email):
        def run():
            barrier.wait(20)
            try:
                order_checkout(sku=product.sku, email=email, quantity=1)
                outcomes.append("ok")
            except Exception as exc:
                outcomes.append(getattr(exc, "code", repr(exc)))

        return run

    threads = [_thread(buy(e), errors) for e in emails]
    for t in threads:
        t.join(60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    return outcomes


def _until_a_transaction_waits_for_a_lock(seconds: float = 5.0) -> bool:
    """Wait until another transaction is blocked on a row lock (this one's),
    at most `seconds`: the other side has reached its locking read."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            # This test database's sessions only: the server is shared.
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p"
                " ON p.ID = t.trx_mysql_thread_id WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()"
            )
            if cursor.fetchone()[0]:
                return True
        time.sleep(0.02)
    return False


def _pay_and_deliver_everything(product) -> list[Order]:
    persistence.order_persist_queued()
    for order in Order.objects.filter(product=product, status=Order.Status.AWAITING_PAYMENT):
        pay(order.order_no, event_id=f"e-{order.order_no}")
    for order in Order.objects.filter(product=product, status=Order.Status.PAID):
        fulfilment.order_fulfil(order_id=order.id, batch_size=1)
    return list(Order.objects.filter(product=product))


def test_checkouts_while_the_merchant_lowers_the_number_never_take_the_gate_below_zero(published):
    """Stock 10; the merchant sets 2 (in the admin's transaction, still open)
    while eight buyers check out at once: at most the 2 left are sold, the
    gate never goes below zero, and every paid order gets its unit."""
    product = product_reusable(stock=10, per_buyer_limit=1)
    lowered, checked_out = threading.Event(), threading.Event()
    errors: list[Exception] = []

    def merchant():
        with transaction.atomic():  # as the admin's save holds it
            product_stock_set(product_id=product.id, quantity=2)
            lowered.set()
            assert checked_out.wait(60)

    thread = _thread(merchant, errors)
    assert lowered.wait(20)
    outcomes = _checkouts_at_once(product, [f"b{i}@x.com" for i in range(8)])
    checked_out.set()
    thread.join(60)
    assert errors == []

    assert outcomes.count("ok") == 2 and outcomes.count("sold_out") == 6
    assert stock_remaining(product_id=product.id) == 0
    orders = _pay_and_deliver_everything(product)
    assert [o.status for o in orders] == [Order.Status.DELIVERED] * 2
    assert stock_number(product) == 0 and stock_remaining(product_id=product.id) == 0
    assert reconcile_run(drift_settle_seconds=0).drift_fixed == {}
    assert stock_gate_rebuild(product=product) == (True, 0)


def test_a_crowd_and_a_merchant_lowering_the_number_step_by_step_end_exact(published):
    """Thirty buyers and a merchant lowering 30 -> 24 -> 18 -> 12 -> 6 at the
    same time, a watcher reading the counter throughout: it is never below
    zero, a step the crowd overtook is refused, and what was sold, what is
    left and the number agree at the end."""
    product = product_reusable(stock=30, per_buyer_limit=1)
    done = threading.Event()
    seen: list[int] = []
    refused: list[int] = []
    errors: list[Exception] = []

    def watcher():
        client, key = stock_redis(), stock_key(product.id)
        while not done.is_set():
            seen.append(int(client.get(key)))

    def merchant():
        client, key = stock_redis(), stock_key(product.id)
        deadline = time.monotonic() + 20
        while int(client.get(key)) == 30 and time.monotonic() < deadline:
            pass  # start with the crowd's first reservation
        for quantity in (24, 18, 12, 6):
            try:
                product_stock_set(product_id=product.id, quantity=quantity)
            except InvalidInput:
                refused.append(quantity)
            time.sleep(0.005)

    threads = [_thread(watcher, errors), _thread(merchant, errors)]
    outcomes = _checkouts_at_once(product, [f"c{i}@x.com" for i in range(30)])
    threads[1].join(60)
    done.set()
    threads[0].join(10)
    assert errors == []

    assert min(seen) >= 0
    sold = outcomes.count("ok")
    assert stock_remaining(product_id=product.id) == stock_number(product) - sold >= 0
    orders = _pay_and_deliver_everything(product)
    assert all(o.status == Order.Status.DELIVERED for o in orders) and len(orders) == sold
    assert stock_number(product) == stock_remaining(product_id=product.id) >= 0
    assert reconcile_run(drift_settle_seconds=0).drift_fixed == {}


def test_a_decrease_the_gate_cannot_cover_is_refused_by_the_gate_and_changes_nothing():
    """Only 1 unit is free in the gate (what the form's check of the orders
    saw is already old): lowering 5 -> 3 is refused by the script itself."""
    product = product_reusable(stock=5)
    stock_redis().set(stock_key(product.id), 1)
    with pytest.raises(InvalidInput) as refused:
        product_stock_set(product_id=product.id, quantity=3)
    assert "1" in str(refused.value.extra["fields"]["stock_quantity"][0])
    assert stock_number(product) == 5 and stock_remaining(product_id=product.id) == 1


def test_a_failed_write_gives_the_units_back(monkeypatch):
    product = product_reusable(stock=10)

    def broken_update(self, **fields):
        raise DatabaseError("write failed")

    monkeypatch.setattr("django.db.models.query.QuerySet.update", broken_update)
    with pytest.raises(DatabaseError):
        product_stock_set(product_id=product.id, quantity=4)
    monkeypatch.undo()
    assert stock_number(product) == 10 and stock_remaining(product_id=product.id) == 10


def test_a_rolled_back_caller_leaves_the_gate_low_until_reconcile_returns_the_units():
    product = product_reusable(stock=10)

    def admin_save_failing_after_the_stock_change():
        with transaction.atomic():
            product_stock_set(product_id=product.id, quantity=4)
            raise RuntimeError("the admin's later write failed")

    with pytest.raises(RuntimeError):
        admin_save_failing_after_the_stock_change()
    assert stock_number(product) == 10
    assert stock_remaining(product_id=product.id) == 4  # errs low, never high
    assert reconcile_run(drift_settle_seconds=0).drift_fixed == {product.sku: 6}
    assert stock_remaining(product_id=product.id) == 10


def test_a_gate_not_warmed_is_built_from_the_number_once_the_decrease_commits():
    """The gate is unknown (Redis lost it) while the merchant lowers 10 -> 2:
    the database write alone is right, and a warm-up running meanwhile waits
    for it instead of counting the old number."""
    product = product_reusable(stock=10)
    redis_lose_product(product)
    lowered, commit = threading.Event(), threading.Event()
    errors: list[Exception] = []
    warmed: list[tuple] = []

    def merchant():
        with transaction.atomic():
            assert product_stock_set(product_id=product.id, quantity=2) == -8
            lowered.set()
            assert commit.wait(20)
            # Commit only once the warm-up waits for the row (or has read past it).
            _until_a_transaction_waits_for_a_lock(seconds=3)

    merchant_thread = _thread(merchant, errors)
    assert lowered.wait(20)
    warm_thread = _thread(lambda: warmed.append(stock_warm(product=Product.objects.get(id=product.id))), errors)
    commit.set()
    merchant_thread.join(30)
    warm_thread.join(30)
    assert errors == []
    assert warmed == [(True, 2)]
    assert stock_number(product) == 2 and stock_remaining(product_id=product.id) == 2


def test_the_drift_check_waits_for_a_decrease_in_flight():
    """The counter already took the decrease; its write is not committed yet.
    Reconciliation must not mistake that moment for drift and add the units
    back (the gate would end 8 over the record)."""
    product = product_reusable(stock=10)
    lowered, commit = threading.Event(), threading.Event()
    errors: list[Exception] = []
    reports = []

    def merchant():
        with transaction.atomic():
            product_stock_set(product_id=product.id, quantity=2)
            lowered.set()
            assert commit.wait(20)
            # Commit only once the drift check waits for the row (or has read past it).
            _until_a_transaction_waits_for_a_lock(seconds=5)

    merchant_thread = _thread(merchant, errors)
    assert lowered.wait(20)
    reconcile_thread = _thread(lambda: reports.append(reconcile_run(drift_settle_seconds=0)), errors)
    commit.set()
    merchant_thread.join(30)
    reconcile_thread.join(60)
    assert errors == []
    assert reports[0].drift_fixed == {}
    assert stock_number(product) == 2 and stock_remaining(product_id=product.id) == 2


def test_a_decrease_is_refused_while_the_gate_cannot_be_asked(monkeypatch):
    """A gate cut off (not restarted) still holds the old count when the
    network heals, and checkout would resume with it: lowering the number
    now is refused, and an increase is not (reconcile adds it later)."""
    product = product_reusable(stock=10)

    def unreachable(**call):
        raise RedisConnectionError("gate unreachable")

    monkeypatch.setattr("apps.catalog.services.stock_withdraw", unreachable)
    with pytest.raises(InvalidInput) as refused:
        product_stock_set(product_id=product.id, quantity=4)
    assert "Redis" in str(refused.value.extra["fields"]["stock_quantity"][0])
    assert stock_number(product) == 10 and stock_remaining(product_id=product.id) == 10
    assert product_stock_set(product_id=product.id, quantity=12) == 2
    assert stock_number(product) == 12 and stock_remaining(product_id=product.id) == 12
