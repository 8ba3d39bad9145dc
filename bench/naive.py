"""The naive design the benchmark compares checkout with (bench only, never in
the app): the whole purchase decided in MariaDB, in the request, in one
transaction. Lock the product's stock row, decrement it, pick a key, insert
the order and hand it the key. Every buyer of one product queues on that row.
"""

import json
import time

from django.db import OperationalError, connection, transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.cardkeys.models import CardKey
from apps.catalog.models import Product
from apps.orders.identity import access_token_for, access_token_hash, order_number_new
from apps.orders.models import Order

STOCK_TABLE = "bench_naive_stock"
# MariaDB error numbers a naive checkout meets under contention.
LOCK_WAIT_TIMEOUT, DEADLOCK = 1205, 1213


def naive_stock_table_create(*, product_id: int, stock: int) -> None:
    """The stock row every naive checkout of this product locks."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {STOCK_TABLE} (product_id BIGINT PRIMARY KEY, stock INT NOT NULL) ENGINE=InnoDB"
        )
        cursor.execute(f"REPLACE INTO {STOCK_TABLE} (product_id, stock) VALUES (%s, %s)", [product_id, stock])


def naive_requests_wait(*, timeout: float = 90) -> int:
    """Until no naive checkout is running in the server (each waits on the
    stock row's lock, up to innodb_lock_wait_timeout). Returns how many were
    still running when called."""
    query = (
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
        f"WHERE INFO LIKE '%%{STOCK_TABLE}%%' AND ID <> CONNECTION_ID()"
    )
    deadline = time.monotonic() + timeout
    first = None
    while True:
        with connection.cursor() as cursor:
            cursor.execute(query)
            (running,) = cursor.fetchone()
        first = running if first is None else first
        if not running or time.monotonic() > deadline:
            return first
        time.sleep(0.2)


@csrf_exempt
@require_POST
def naive_order_create(request):
    try:
        body = json.loads(request.body)
        sku, email = str(body["sku"]), str(body["email"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "invalid"}, status=400)
    try:
        order = _naive_checkout(sku=sku, email=email)
    except OperationalError as exc:
        number = exc.args[0] if exc.args else None
        code = {LOCK_WAIT_TIMEOUT: "lock_wait_timeout", DEADLOCK: "deadlock"}.get(number, "database_error")
        return JsonResponse({"error": code, "detail": str(exc)}, status=503)
    if order is None:
        return JsonResponse({"error": "sold_out"}, status=409)
    return JsonResponse({"order_no": order.order_no, "status": order.status}, status=202)


def _naive_checkout(*, sku: str, email: str) -> Order | None:
    product = Product.objects.using("default").get(sku=sku)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT stock FROM {STOCK_TABLE} WHERE product_id = %s FOR UPDATE", [product.id])
            cursor.execute(
                f"UPDATE {STOCK_TABLE} SET stock = stock - 1 WHERE product_id = %s AND stock > 0", [product.id]
            )
            if cursor.rowcount == 0:
                return None
        key = (
            CardKey.objects.select_for_update()
            .filter(product_id=product.id, status=CardKey.Status.AVAILABLE)
            .order_by("id")
            .first()
        )
        if key is None:
            transaction.set_rollback(True)
            return None
        order_no = order_number_new(product_id=product.id)
        order = Order.objects.create(
            order_no=order_no,
            product=product,
            buyer_email=email,
            quantity=1,
            unit_price=product.price,
            amount=product.price,
            currency=product.currency,
            status=Order.Status.AWAITING_PAYMENT,
            access_token_hash=access_token_hash(access_token_for(order_no=order_no)),
        )
        CardKey.objects.filter(id=key.id).update(status=CardKey.Status.SOLD, order=order)
    return order
