"""Storing an import's keys in bulk, one chunk at a time.

Each chunk is encrypted on the caller's thread, then a helper thread drops
the keys already stored for the product and inserts the rest with multi-row
INSERTs, while the caller reads, fingerprints and encrypts the next chunk:
MariaDB round trips release the GIL, so the Python work overlaps the server's
(measured in docs/import.md). The helper uses the caller's own connection,
hence its transaction and the product lock it holds; at most one chunk is in
flight and the caller touches the connection only when none is.
"""

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from .crypto import secret_encrypter
from .models import CardKey

_ROWS_PER_STATEMENT = 1000


@dataclass
class ChunkResult:
    accepted: int
    duplicate_lines: list[int]
    # Stored keys of this chunk that another product holds too: (line number, that product's id).
    elsewhere: list[tuple[int, int]] = field(default_factory=list)


def _insert_rows(cursor, sql: str, params: list[str]) -> None:
    cursor.execute(sql, params)


class KeyStore:
    """Use as a context manager; `submit` chunks of (line number, secret, fingerprint hex)."""

    def __init__(self, *, product_id: int, batch_id: int, check_stored: bool = True):
        """check_stored=False skips looking for each chunk's keys among the
        product's stored keys; only right when the product had none and no one
        else can add any (the caller holds the product lock). The keys are
        looked up among the other products' either way, for the warning."""
        self._connection = connections[DEFAULT_DB_ALIAS]
        self._connection.ensure_connection()
        self._product_id = int(product_id)
        self._batch_id = int(batch_id)
        self._check_stored = check_stored
        self._encrypt = secret_encrypter()
        # Stored as UTC like every Django datetime, in a fixed format.
        self._created_at = timezone.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardkeys-import")
        self._in_flight: Future | None = None

    def __enter__(self) -> "KeyStore":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Never let the transaction end (commit or rollback) under a running chunk.
        future, self._in_flight = self._in_flight, None
        if future is not None:
            future.exception()  # waits; a failure here is secondary to `exc`
        self._executor.shutdown(wait=True)

    def submit(self, chunk: list[tuple[int, str, str]]) -> ChunkResult | None:
        """Start storing `chunk`; returns the previous chunk's result (None for the first).
        Raises the previous chunk's database error."""
        # Encrypted here, not on the helper: the helper's time is the server's
        # and the GIL is free for this thread meanwhile. A key that turns out to
        # be stored already was encrypted for nothing; re-uploads are rare.
        encrypt = self._encrypt
        rows = [(number, encrypt(secret), fingerprint) for number, secret, fingerprint in chunk]
        previous = self.wait()
        self._in_flight = self._executor.submit(self._store, rows)
        return previous

    def wait(self) -> ChunkResult | None:
        """The result of the chunk in flight, once stored; None if there is none."""
        future, self._in_flight = self._in_flight, None
        return None if future is None else future.result()

    def _store(self, rows: list[tuple[int, str, str]]) -> ChunkResult:
        """Runs on the helper thread: (line number, token, fingerprint) rows."""
        with self._connection.wrap_database_errors:
            cursor = self._connection.connection.cursor()
            try:
                held = self._stored_elsewhere_and_here(cursor, [fingerprint for _, _, fingerprint in rows])
                params, duplicates, elsewhere = [], [], []
                for number, token, fingerprint in rows:
                    holders = held.get(fingerprint, set())
                    if self._check_stored and self._product_id in holders:
                        duplicates.append(number)
                        continue
                    params += (token, fingerprint)
                    if others := holders - {self._product_id}:
                        # Still stored: the same code sold as two products is the merchant's call.
                        elsewhere.append((number, min(others)))
                accepted = len(params) // 2
                for start in range(0, accepted, _ROWS_PER_STATEMENT):
                    count = min(_ROWS_PER_STATEMENT, accepted - start)
                    _insert_rows(cursor, self._insert_sql(count), params[2 * start : 2 * (start + count)])
            finally:
                cursor.close()
        return ChunkResult(accepted=accepted, duplicate_lines=duplicates, elsewhere=elsewhere)

    def _stored_elsewhere_and_here(self, cursor, fingerprints: list[str]) -> dict[str, set[int]]:
        """The products (this one and others) already holding each of these
        keys, by fingerprint: one lookup on the fingerprint index, no
        decryption. Only the keys found are in the answer."""
        placeholders = ", ".join(["%s"] * len(fingerprints))
        cursor.execute(
            f"SELECT fingerprint, product_id FROM {self._table()} WHERE fingerprint IN ({placeholders})",
            fingerprints,
        )
        held: dict[str, set[int]] = {}
        for fingerprint, product_id in cursor.fetchall():
            text = fingerprint.decode("ascii") if isinstance(fingerprint, bytes) else fingerprint
            held.setdefault(text, set()).add(int(product_id))
        return held

    def _insert_sql(self, rows: int) -> str:
        # Only the token and fingerprint are parameters; the values every row
        # shares are written in (all generated here, none from the upload),
        # which saves two thirds of the escaping on a million rows.
        row = (
            f"(%s, %s, {self._product_id}, {self._batch_id}, '{CardKey.Status.AVAILABLE.value}', '{self._created_at}')"
        )
        quote = self._connection.ops.quote_name
        # The unique (product, fingerprint) constraint is the backstop against a
        # duplicate the check above missed; ON DUPLICATE KEY skips only that,
        # where INSERT IGNORE would also hide truncation and other faults.
        return (
            f"INSERT INTO {self._table()} (secret_encrypted, fingerprint, product_id, batch_id, status, created_at) "
            f"VALUES {', '.join([row] * rows)} ON DUPLICATE KEY UPDATE {quote('id')} = {quote('id')}"
        )

    def _table(self) -> str:
        return self._connection.ops.quote_name(CardKey._meta.db_table)
