"""The shop with years of history in its tables (issue 15, "Volume"): fill the
bench database with historic orders and keys, set-based, and EXPLAIN the hot
queries against what was filled.

Every index and constraint the migrations made exists while the benchmark
measures. During the fill, the indexes over random values (buyer email, key
fingerprint) are dropped and built again, sorted, at its end
(_random_indexes_built_after); the fill's own session skips the row-by-row
uniqueness and foreign key checks, the rows being unique and consistent by
construction (rebuilding the unique index checks it). Rows:

- `products` historic products (sales that ended), one key batch each;
- `orders` orders over the last two years, in id order of their dates: 85 %
  delivered, 11 % expired, 3 % refunded (their keys revoked), 1 % cancelled;
  1–4 keys each, buyers among 500,000 addresses at the usual mail providers,
  order numbers in the app's format (day-product-random), access token hashes;
- `keys` keys in all: one per unit of every delivered or refunded order, the
  rest available on the historic products. Secrets are real Fernet tokens of
  the app's key (a handful, reused: nothing reads them), fingerprints are
  distinct SHA-256 hex strings like the HMAC column's."""

import re
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, transaction

# MariaDB's SEQUENCE engine: `seq_1_to_N` is a table of 1..N, no storage.
SEQUENCE_TABLE = "seq_{0}_to_{1}"
DOMAINS = ("qq.com", "163.com", "gmail.com", "outlook.com", "126.com", "foxmail.com", "hotmail.com", "sina.com")
SECRETS_REUSED = 16
TWO_YEARS_S = 2 * 365 * 86400


def _sql(statement: str) -> int:
    # No parameters: the statements hold only numbers and literals made here,
    # and without parameters the driver leaves DATE_FORMAT's % alone.
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.rowcount


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _contiguous(ids: list[int], what: str) -> int:
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise RuntimeError(f"the historic {what} did not get consecutive ids: {ids[:5]}…")
    return ids[0]


def _historic_products(count: int) -> tuple[int, int]:
    """`count` products whose sale ended, and a key batch for each: (first product id, first batch id)."""
    from django.utils import timezone

    from apps.cardkeys.models import KeyBatch
    from apps.catalog.models import Product

    ended = timezone.now() - timezone.timedelta(days=1)
    Product.objects.bulk_create(
        Product(
            sku=f"HIST-{n:03d}",
            title=f"Historic product {n}",
            price="9.90",
            sale_ends_at=ended,
            max_per_order=5,
            min_page_seconds=0,
        )
        for n in range(count)
    )
    product_ids = list(Product.objects.filter(sku__startswith="HIST-").order_by("id").values_list("id", flat=True))
    first_product = _contiguous(product_ids, "products")
    KeyBatch.objects.bulk_create(KeyBatch(product_id=pid, source_name="historic.csv") for pid in product_ids)
    batch_ids = list(KeyBatch.objects.filter(product_id__in=product_ids).order_by("id").values_list("id", flat=True))
    return first_product, _contiguous(batch_ids, "key batches")


def _secret_choice(salt_sql: str) -> str:
    """SQL picking one of a few real Fernet tokens of the app's key by a row's number."""
    from apps.cardkeys.crypto import encrypt_secret

    tokens = ", ".join(_quoted(encrypt_secret(f"HIST-{n:04d}-XXXX-XXXX")) for n in range(SECRETS_REUSED))
    return f"ELT(1 + ({salt_sql}) MOD {SECRETS_REUSED}, {tokens})"


def _indexes_on(table: str, column: str) -> list[tuple[str, str]]:
    """(name, definition) of each secondary index of `table` over `column`, from SHOW CREATE TABLE."""
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW CREATE TABLE {table}")
        ddl = cursor.fetchone()[1]
    found = []
    for line in ddl.splitlines():
        definition = line.strip().rstrip(",")
        match = re.match(r"(?:UNIQUE )?KEY `([^`]+)` \((.*)\)", definition)
        if match and f"`{column}`" in match.group(2):
            found.append((match.group(1), definition))
    return found


@contextmanager
def _random_indexes_built_after(columns: dict[str, str]):
    """Drop the secondary indexes over random values ({table: column}: the
    buyer email, the key fingerprint) for the fill and build them again,
    sorted, when it ends, exactly as SHOW CREATE TABLE had them; a unique
    one being rebuilt checks that the filled rows are unique. Inserting
    millions of random values into a B-tree through the default 128 MB
    buffer pool writes every leaf page back many times over (80 s for
    550,000 keys on the 2-core machine, not counting the rest); the sorted
    build writes each once. The other indexes grow in order (ids, dates,
    day-prefixed order numbers) and stay in place."""
    dropped = {table: _indexes_on(table, column) for table, column in columns.items()}
    for table, indexes in dropped.items():
        if indexes:
            _sql(f"ALTER TABLE {table} " + ", ".join(f"DROP INDEX `{name}`" for name, _ in indexes))
    try:
        yield
    finally:
        for table, indexes in dropped.items():
            if indexes:
                _sql(f"ALTER TABLE {table} " + ", ".join(f"ADD {definition}" for _, definition in indexes))


def _orders_insert(*, lo: int, hi: int, total: int, products: int, first_product: int) -> int:
    from apps.orders.models import Order

    table = Order._meta.db_table
    # CRC32 of the row number with a salt per attribute: cheap, repeatable pseudo-random draws.
    rnd = "CRC32(CONCAT('{0}', seq))"
    domains = ", ".join(_quoted(d) for d in DOMAINS)
    row = f"""
        SELECT seq AS n,
               {first_product} + {rnd.format("p")} MOD {products} AS product_id,
               1 + {rnd.format("q")} MOD 4 AS qty,
               {rnd.format("s")} MOD 100 AS draw,
               CONCAT('buyer', {rnd.format("e")} MOD 500000, '@',
                      ELT(1 + {rnd.format("d")} MOD {len(DOMAINS)}, {domains})) AS email,
               NOW(6) - INTERVAL {TWO_YEARS_S} SECOND + INTERVAL (seq * {TWO_YEARS_S} DIV {total}) SECOND AS created
        FROM {SEQUENCE_TABLE.format(lo, hi)}"""
    status = "CASE WHEN draw < 85 THEN 'delivered' WHEN draw < 96 THEN 'expired' WHEN draw < 99 THEN 'refunded' ELSE 'cancelled' END"
    paid = "IF(draw < 85 OR draw BETWEEN 96 AND 98, created + INTERVAL 90 SECOND, NULL)"
    delivered = "IF(draw < 85 OR draw BETWEEN 96 AND 98, created + INTERVAL 91 SECOND, NULL)"
    return _sql(f"""
        INSERT INTO {table} (order_no, product_id, buyer_email, quantity, unit_price, amount, coupon_code,
            discount, input_values, currency, status, buyer_identities, access_token_hash, attention_reason,
            overpaid, reserved_until, language, created_at, updated_at, paid_at, delivered_at, keys_emailed_at,
            reusable_key_encrypted, manual_content_encrypted)
        SELECT CONCAT(DATE_FORMAT(created, '%y%m%d'), '-', product_id, '-', UPPER(LEFT(MD5(CONCAT('vol-order-', n)), 12))),
               product_id, email, qty, 9.90, 9.90 * qty, '', 0, '', 'CNY', {status},
               CONCAT('e:', SHA2(email, 256)), SHA2(CONCAT('vol-token-', n), 256), '', 0,
               created + INTERVAL 15 MINUTE, {_quoted(settings.LANGUAGE_CODE)}, created,
               created + INTERVAL 92 SECOND, {paid}, {delivered}, {delivered}, '', ''
        FROM ({row}) AS r
        ORDER BY n""")


def _sold_keys_insert(*, lo_id: int, hi_id: int, first_product: int, first_batch: int, secret: str) -> int:
    """One key per unit of the delivered and refunded orders with ids in [lo_id, hi_id]."""
    from apps.cardkeys.models import CardKey
    from apps.orders.models import Order

    return _sql(f"""
        INSERT INTO {CardKey._meta.db_table} (product_id, batch_id, secret_encrypted, fingerprint, status,
            order_id, sold_at, created_at)
        SELECT o.product_id, {first_batch} + o.product_id - {first_product},
               {secret.replace("seq", "(o.id + s.seq)")},
               SHA2(CONCAT('vol-key-', o.id, '-', s.seq), 256),
               IF(o.status = 'refunded', 'revoked', 'sold'), o.id, o.delivered_at, o.created_at - INTERVAL 3 DAY
        FROM {Order._meta.db_table} o JOIN {SEQUENCE_TABLE.format(1, 4)} s ON s.seq <= o.quantity
        WHERE o.id BETWEEN {lo_id} AND {hi_id} AND o.status IN ('delivered', 'refunded')
        ORDER BY o.id, s.seq""")


def _available_keys_insert(*, lo: int, hi: int, products: int, first_product: int, first_batch: int, secret: str):
    from apps.cardkeys.models import CardKey

    return _sql(f"""
        INSERT INTO {CardKey._meta.db_table} (product_id, batch_id, secret_encrypted, fingerprint, status,
            order_id, sold_at, created_at)
        SELECT {first_product} + seq MOD {products}, {first_batch} + seq MOD {products}, {secret},
               SHA2(CONCAT('vol-free-', seq), 256), 'available', NULL, NULL,
               NOW(6) - INTERVAL seq MOD 86400 SECOND
        FROM {SEQUENCE_TABLE.format(lo, hi)}
        ORDER BY seq""")


def volume_fill(*, orders: int, keys: int, products: int = 50, chunk: int = 250_000) -> dict:
    """Fill the bench database with history (module docstring). Returns the
    rows written and the seconds each part took."""
    from apps.cardkeys.models import CardKey
    from apps.orders.models import Order

    seconds = {}
    clock = time.monotonic()

    def lap(name):
        nonlocal clock
        seconds[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    first_product, first_batch = _historic_products(products)
    secret = _secret_choice("seq")
    random_indexes = {Order._meta.db_table: "buyer_email", CardKey._meta.db_table: "fingerprint"}
    _sql("SET SESSION unique_checks = 0, foreign_key_checks = 0")
    try:
        with _random_indexes_built_after(random_indexes):
            lap("setup")
            for lo in range(1, orders + 1, chunk):
                with transaction.atomic():
                    _orders_insert(
                        lo=lo,
                        hi=min(lo + chunk - 1, orders),
                        total=orders,
                        products=products,
                        first_product=first_product,
                    )
            historic = Order.objects.filter(product_id__gte=first_product, product_id__lt=first_product + products)
            first_order = historic.order_by("id").values_list("id", flat=True).first()
            last_order = historic.order_by("-id").values_list("id", flat=True).first()
            lap("orders")
            sold = 0
            step = max(1, chunk // 2)  # 2.2 keys an order on average: chunks of about `chunk` keys
            for lo_id in range(first_order, last_order + 1, step):
                with transaction.atomic():
                    sold += _sold_keys_insert(
                        lo_id=lo_id,
                        hi_id=min(lo_id + step - 1, last_order),
                        first_product=first_product,
                        first_batch=first_batch,
                        secret=secret,
                    )
            lap("sold_keys")
            available = max(0, keys - sold)
            for lo in range(1, available + 1, chunk):
                with transaction.atomic():
                    _available_keys_insert(
                        lo=lo,
                        hi=min(lo + chunk - 1, available),
                        products=products,
                        first_product=first_product,
                        first_batch=first_batch,
                        secret=secret,
                    )
            lap("available_keys")
        lap("random_indexes_built")
    finally:
        _sql("SET SESSION unique_checks = 1, foreign_key_checks = 1")
    for model in (Order, CardKey):
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE TABLE {model._meta.db_table}")
            cursor.fetchall()
    lap("analyze")
    return {
        "products": products,
        "orders": Order.objects.count(),
        "keys": CardKey.objects.count(),
        "keys_sold_or_revoked": sold,
        "keys_available_historic": available,
        "seconds": {**seconds, "total": round(sum(seconds.values()), 1)},
    }


# --- EXPLAIN of the hot queries


def hot_queries(*, product_id: int, order_no: str, order_id: int) -> dict:
    """The statements the purchase path runs per order, built as the code
    builds them (same querysets, same locks), against a product, an order
    number and an order id that exist: {name: (sql, params)}."""
    from django.utils import timezone

    from apps.cardkeys.models import CardKey
    from apps.orders.models import Order
    from apps.orders.selectors import paid_orders_to_fulfil
    from apps.payments.models import PaymentEvent

    def compiled(queryset):
        return queryset.query.get_compiler(using=queryset.db).as_sql()

    keys = CardKey._meta.db_table
    return {
        # The persister's idempotence check before its INSERT (orders.services.persistence).
        "persist_existing_orders": compiled(
            Order.objects.filter(order_no__in=[order_no, "000000-0-NOSUCHORDER0"]).values_list("order_no", flat=True)
        ),
        # The payment webhook locks the order by number (orders.services.payment)…
        "payment_order_lock": compiled(Order.objects.select_for_update().filter(order_no=order_no)[:1]),
        # …and dedupes on the provider's event id.
        "payment_event_dedupe": compiled(
            PaymentEvent.objects.select_for_update().filter(provider="sandbox", event_id="evt-none")[:1]
        ),
        # Fulfilment: its own order, then a batch of paid orders nobody holds.
        "fulfil_order_lock": compiled(paid_orders_to_fulfil().select_for_update().filter(id=order_id)),
        "fulfil_batch_lock": compiled(
            paid_orders_to_fulfil().select_for_update(skip_locked=True).exclude(id=order_id).order_by("id")[:50]
        ),
        # The key pick (cardkeys.claims.cardkeys_claim) and the sold mark (cardkeys_mark_sold).
        "key_claim": compiled(
            CardKey.objects.select_for_update(skip_locked=True)
            .filter(product_id=product_id, status=CardKey.Status.AVAILABLE)
            .order_by("id")
            .values_list("id", flat=True)[:50]
        ),
        "keys_mark_sold": (
            f"UPDATE {keys} SET status = %s, order_id = CASE id WHEN %s THEN %s END WHERE id IN (%s) AND status = %s",
            ["sold", 1, order_id, 1, "available"],
        ),
        # The order page and API (a poll that is not answered 304 from Redis): the order by number,
        # with its product, then its keys.
        "order_lookup": compiled(Order.objects.select_related("product").filter(order_no__in=[order_no])),
        "order_keys": compiled(CardKey.objects.filter(order_id=order_id).order_by("id")),
        # Beat's expiry of unpaid reservations.
        "expiry_scan": compiled(
            Order.objects.filter(status=Order.Status.AWAITING_PAYMENT, reserved_until__lt=timezone.now())
            .order_by("id")
            .values_list("id", flat=True)[:500]
        ),
    }


def explain(sql: str, params) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        names = [column[0].lower() for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def hot_queries_explain(*, product_id: int, order_no: str, order_id: int) -> dict:
    """EXPLAIN of each hot query: per table read, the access type, the index
    and the rows MariaDB expects to examine; `uses_index` is false when any
    table is read by a full scan (type ALL, or no key at all).
    select_for_update compiles only inside a transaction: one that is rolled back."""
    report = {}
    with transaction.atomic():
        statements = hot_queries(product_id=product_id, order_no=order_no, order_id=order_id)
        for name, (sql, params) in statements.items():
            plan = explain(sql, params)
            tables = [
                {"table": row["table"], "type": row["type"], "key": row["key"], "rows": row["rows"]}
                for row in plan
                if row.get("table")
            ]
            extra = "; ".join(str(row.get("extra") or "") for row in plan)
            # A unique-key lookup that finds no row ends the plan before any table is listed.
            const_miss = not tables and "noticed after reading const tables" in extra
            report[name] = {
                "tables": tables,
                "extra": extra,
                "uses_index": const_miss or (bool(tables) and all(t["type"] != "ALL" and t["key"] for t in tables)),
            }
        transaction.set_rollback(True)
    return report
