"""Writes to the key pool: importing uploads, voiding keys, rotating the encryption key.

Claiming keys for orders lives in claims.py; nothing here locks key rows.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptography.fernet import InvalidToken
from django.apps import apps as django_apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from apps.catalog.models import Product
from apps.core.db_locks import named_lock
from apps.stock.services import stock_adjust

from .bulk_store import ChunkResult, KeyStore
from .crypto import fingerprinter, is_current_token, reencrypt_secret
from .exceptions import ImportRefused
from .models import CardKey, KeyBatch
from .upload_reader import CSV, TEXT, read_upload, upload_format

logger = logging.getLogger(__name__)

# How many duplicate / invalid line numbers a report lists; the counts are always complete.
REPORT_LINE_LIMIT = 20
# In-batch duplicates are found by this many bytes of the HMAC: a million keys
# fit in ~80 MB, and a false match needs a 2^-128 collision.
_SEEN_DIGEST_BYTES = 16


@dataclass
class ImportReport:
    """What became of an upload's lines. Counts are complete; the line lists
    hold the first REPORT_LINE_LIMIT line numbers."""

    batch_id: int | None
    accepted: int = 0
    duplicates: int = 0
    invalid: int = 0
    duplicate_lines: list[int] = field(default_factory=list)
    invalid_lines: list[tuple[int, str]] = field(default_factory=list)
    # Keys imported although another product of the shop holds them too (a
    # warning, not a refusal): how many, their first line numbers, and the
    # other products' SKUs (set at the end of the import).
    elsewhere: int = 0
    elsewhere_lines: list[int] = field(default_factory=list)
    elsewhere_product_ids: set[int] = field(default_factory=set)
    elsewhere_skus: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return _(
            "%(accepted)d keys imported, %(duplicates)d duplicates skipped, %(invalid)d invalid lines refused."
        ) % {"accepted": self.accepted, "duplicates": self.duplicates, "invalid": self.invalid}

    def details(self) -> list[str]:
        """The summary, the warning about keys other products hold, then
        which lines were skipped or refused and why."""
        lines = [self.summary()]
        if self.elsewhere:
            lines.append(self.elsewhere_warning())
        if self.duplicate_lines:
            lines.append(
                _("Duplicate lines: %(lines)s%(more)s")
                % {
                    "lines": ", ".join(map(str, self.duplicate_lines)),
                    "more": _more(self.duplicates, self.duplicate_lines),
                }
            )
        if self.invalid_lines:
            lines.append(_("Invalid lines:"))
            lines.extend(_("line %(number)d: %(reason)s") % {"number": n, "reason": r} for n, r in self.invalid_lines)
            if self.invalid > len(self.invalid_lines):
                lines.append(_more(self.invalid, self.invalid_lines))
        return lines

    def elsewhere_warning(self) -> str:
        return _(
            "Warning: %(count)d imported keys already exist in other products (%(skus)s), lines %(lines)s%(more)s."
        ) % {
            "count": self.elsewhere,
            "skus": ", ".join(self.elsewhere_skus),
            "lines": ", ".join(map(str, self.elsewhere_lines)),
            "more": _more(self.elsewhere, self.elsewhere_lines),
        }

    def note_duplicate(self, number: int) -> None:
        # Stored duplicates are found a chunk after in-batch ones, so line
        # numbers arrive out of order; keep the smallest ones.
        self.duplicates += 1
        self.duplicate_lines.append(number)
        if len(self.duplicate_lines) >= 4 * REPORT_LINE_LIMIT:
            self.trim()

    def note_invalid(self, number: int, reason: str) -> None:
        self.invalid += 1
        if len(self.invalid_lines) < REPORT_LINE_LIMIT:
            self.invalid_lines.append((number, reason))

    def add_stored(self, result: ChunkResult | None) -> None:
        if result is not None:
            self.accepted += result.accepted
            for number in result.duplicate_lines:
                self.note_duplicate(number)
            for number, product_id in result.elsewhere:
                self.elsewhere += 1
                self.elsewhere_product_ids.add(product_id)
                if len(self.elsewhere_lines) < REPORT_LINE_LIMIT:
                    self.elsewhere_lines.append(number)

    def trim(self) -> None:
        self.duplicate_lines.sort()
        del self.duplicate_lines[REPORT_LINE_LIMIT:]


def _more(total: int, listed: list) -> str:
    hidden = total - len(listed)
    return _(" … and %(count)d more") % {"count": hidden} if hidden > 0 else ""


# Called with (lines read so far, the report so far) after each chunk; see ImportProgress.
ProgressCallback = Callable[[int, "ImportReport"], None]


def cardkeys_import(
    *,
    product: Product,
    source: BinaryIO,
    file_name: str = "",
    uploaded_by=None,
    column: str | None = None,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import a .txt/.csv upload of keys into `product` as one batch.

    Blank lines are skipped, duplicates (in the upload or already stored for
    the product) skipped and counted, bad lines refused with their reason;
    the rest is stored. Raises ImportRefused for a problem with the whole
    file, and then nothing of the upload is stored (one transaction). An
    upload with no new key stores no batch (the report's batch_id is None).

    Imports of one product run one at a time, under a MariaDB named lock
    rather than the product row's lock: orders of a live sale insert rows
    that point at the product, and a locked product row would stall them
    for the whole import."""
    with cardkeys_import_lock(product_id=product.pk) as held:
        if not held:
            raise import_lock_busy()
        with transaction.atomic(durable=True):
            return cardkeys_import_rows(
                product=product,
                source=source,
                file_name=file_name,
                uploaded_by=uploaded_by,
                column=column,
                progress=progress,
            )


def cardkeys_import_lock(*, product_id: int):
    """The named lock that keeps imports of one product one at a time."""
    return named_lock(f"import:{product_id}", timeout=settings.CARDKEY_IMPORT_LOCK_TIMEOUT)


def import_lock_busy() -> ImportRefused:
    return ImportRefused(_("Another import of this product is still running. Try again when it is done."))


def cardkeys_import_rows(
    *,
    product: Product,
    source: BinaryIO,
    file_name: str,
    uploaded_by,
    column: str | None,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """cardkeys_import's work. The caller holds the import lock and an open
    transaction that it commits only if this returns (the import job also
    records its outcome in it)."""
    if not product.sells_from_pool:
        raise ImportRefused(_("This product is not sold from a key pool, so it takes no key uploads."))
    if column and not file_name:
        fmt = CSV  # pasted text or stdin with a column name is CSV
    else:
        fmt = upload_format(file_name)
    if column and fmt == TEXT:
        raise ImportRefused(_("A column name only applies to .csv files."))
    batch = KeyBatch.objects.create(product_id=product.pk, uploaded_by=uploaded_by, source_name=file_name[:255])
    report = ImportReport(batch_id=batch.pk)
    fingerprint = fingerprinter()
    chunk_size = settings.CARDKEY_IMPORT_CHUNK_SIZE
    seen: set[bytes] = set()
    pending: list[tuple[int, str, str]] = []
    number = 0
    # A product's first import needs no lookups among stored keys: there are none,
    # and the lock keeps it so. Saves a fifth of a large import's database time.
    has_stored_keys = CardKey.objects.filter(product_id=product.pk).exists()
    with KeyStore(product_id=product.pk, batch_id=batch.pk, check_stored=has_stored_keys) as store:
        next_progress = chunk_size if progress is not None else float("inf")
        for number, secret, reason in read_upload(source, fmt=fmt, column=column):
            if number >= next_progress:
                progress(number, report)
                next_progress = number + chunk_size
            if reason is not None:
                report.note_invalid(number, reason)
                continue
            digest = fingerprint(secret)
            short = digest[:_SEEN_DIGEST_BYTES]
            if short in seen:
                report.note_duplicate(number)
                continue
            seen.add(short)
            pending.append((number, secret, digest.hex()))
            if len(pending) >= chunk_size:
                report.add_stored(store.submit(pending))
                pending = []
        if pending:
            report.add_stored(store.submit(pending))
        report.add_stored(store.wait())
    report.trim()
    report.elsewhere_skus = list(
        Product.objects.filter(id__in=report.elsewhere_product_ids).order_by("sku").values_list("sku", flat=True)
    )
    if not (report.accepted or report.duplicates or report.invalid):
        raise ImportRefused(_("The upload holds no keys."))
    _reconcile_accepted(report)
    if progress is not None:
        progress(number, report)
    if not report.accepted:
        # Every line was refused or a duplicate: an empty batch would only be noise.
        KeyBatch.objects.filter(pk=batch.pk).delete()
        report.batch_id = None
    else:
        KeyBatch.objects.filter(pk=batch.pk).update(
            accepted_count=report.accepted, duplicate_count=report.duplicates, invalid_count=report.invalid
        )
        _adjust_stock_on_commit({product.pk: report.accepted})
    logger.info(
        "cardkeys import product=%s batch=%s accepted=%s duplicates=%s invalid=%s in_other_products=%s",
        product.pk,
        report.batch_id,
        report.accepted,
        report.duplicates,
        report.invalid,
        report.elsewhere,
    )
    return report


def _reconcile_accepted(report: ImportReport) -> None:
    # Rows the unique-constraint backstop skipped were counted as accepted; the
    # batch's stored rows are the truth. (Cannot differ while imports hold the
    # product lock; a key inserted by other means could make it.)
    stored = CardKey.objects.filter(batch_id=report.batch_id).count()
    if stored != report.accepted:
        logger.warning(
            "cardkeys import batch=%s: %s rows skipped by the unique constraint",
            report.batch_id,
            report.accepted - stored,
        )
        report.duplicates += report.accepted - stored
        report.accepted = stored


def _adjust_stock_on_commit(deltas: dict[int, int]) -> None:
    """After commit, move warmed stock counters by what changed in the pool.
    Redis is only the gate: if it is unreachable, reconciliation catches up."""

    def adjust():
        for product_id, delta in deltas.items():
            if not delta:
                continue
            try:
                stock_adjust(product_id=product_id, delta=delta)
            except RedisError:
                logger.warning("stock counter of product %s not adjusted by %s; reconcile will", product_id, delta)

    transaction.on_commit(adjust)


def _set_status(*, key_ids: Iterable[int], old: str, new: str) -> dict[int, int]:
    """Move keys from `old` to `new` status (conditional update, no row locks
    held beyond the statement); returns how many moved per product."""
    moved: dict[int, int] = {}
    ids = sorted(set(key_ids))
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        product_ids = set(CardKey.objects.filter(id__in=chunk).values_list("product_id", flat=True))
        for product_id in sorted(product_ids):
            count = CardKey.objects.filter(id__in=chunk, product_id=product_id, status=old).update(status=new)
            moved[product_id] = moved.get(product_id, 0) + count
    return moved


@transaction.atomic(durable=True)
def cardkeys_void(*, key_ids: Iterable[int]) -> int:
    """Withdraw available keys from sale. Sold and already void keys are left
    alone. Returns how many keys were voided."""
    moved = _set_status(key_ids=key_ids, old=CardKey.Status.AVAILABLE, new=CardKey.Status.VOID)
    _adjust_stock_on_commit({pid: -count for pid, count in moved.items()})
    return sum(moved.values())


@transaction.atomic(durable=True)
def cardkeys_unvoid(*, key_ids: Iterable[int]) -> int:
    """Put void keys back on sale. Returns how many keys became available."""
    moved = _set_status(key_ids=key_ids, old=CardKey.Status.VOID, new=CardKey.Status.AVAILABLE)
    _adjust_stock_on_commit(moved)
    return sum(moved.values())


@dataclass
class RotationReport:
    rotated: int = 0
    already_current: int = 0
    # Keys no configured encryption key opens (listed, never silently skipped).
    unreadable_ids: list[int] = field(default_factory=list)
    # The same for the other secrets under CARDKEY_ENCRYPTION_KEYS, as "<model> <id>".
    unreadable_other: list[str] = field(default_factory=list)


# Other columns holding Fernet tokens under CARDKEY_ENCRYPTION_KEYS: a product's
# reusable key, and what an order received other than pool keys. Rotated with
# the pool, or dropping the old key would leave them unreadable.
OTHER_ENCRYPTED_COLUMNS = (
    ("catalog.Product", "reusable_key_encrypted"),
    ("orders.Order", "reusable_key_encrypted"),
    ("orders.Order", "manual_content_encrypted"),
    # What buyers typed in products' checkout fields.
    ("orders.Order", "input_values"),
    ("notifications.Delivery", "buyer_input_sealed"),
    # The merchant's notification secrets.
    ("notifications.NotificationSettings", "webhook_secret_encrypted"),
    ("notifications.NotificationSettings", "telegram_bot_token_encrypted"),
)


def cardkeys_revoke_for_order(*, order_id: int) -> int:
    """The keys sold to a refunded order are withdrawn for good: `revoked`,
    never sold again nor counted available (they went to the buyer). A
    conditional update, no row locks; the caller holds the order's lock.
    Returns how many."""
    return CardKey.objects.filter(order_id=order_id, status=CardKey.Status.SOLD).update(status=CardKey.Status.REVOKED)


def cardkeys_rotate_encryption(*, chunk_size: int = 1000) -> RotationReport:
    """Re-encrypt every stored secret under the first CARDKEY_ENCRYPTION_KEYS
    key, one committed chunk at a time, so it can be stopped and re-run.
    Afterwards the older keys can be removed from the setting."""
    report = RotationReport()
    last_id = 0
    while True:
        rows = list(
            CardKey.objects.filter(id__gt=last_id).order_by("id").values_list("id", "secret_encrypted")[:chunk_size]
        )
        if not rows:
            break
        last_id = rows[-1][0]
        _rotate_chunk(rows, report)
    for model_name, column in OTHER_ENCRYPTED_COLUMNS:
        _rotate_column(django_apps.get_model(model_name), column, report, chunk_size=chunk_size)
    return report


def _rotate_column(model, column: str, report: RotationReport, *, chunk_size: int) -> None:
    """Re-encrypt one column's non-empty tokens, a committed chunk at a time;
    each update is conditional on the old token, like _rotate_chunk's."""
    last_id = 0
    rows_with_token = model.objects.exclude(**{column: ""}).order_by("id")
    while True:
        rows = list(rows_with_token.filter(id__gt=last_id).values_list("id", column)[:chunk_size])
        if not rows:
            return
        last_id = rows[-1][0]
        with transaction.atomic(durable=True):
            for row_id, token in rows:
                if is_current_token(token):
                    report.already_current += 1
                    continue
                try:
                    new_token = reencrypt_secret(token)
                except InvalidToken:
                    report.unreadable_other.append(f"{model._meta.label_lower} {row_id}")
                    continue
                report.rotated += model.objects.filter(id=row_id, **{column: token}).update(**{column: new_token})


@transaction.atomic(durable=True)
def _rotate_chunk(rows: list[tuple[int, str]], report: RotationReport) -> None:
    updates = []
    for key_id, token in rows:
        if is_current_token(token):
            report.already_current += 1
            continue
        try:
            updates.append((reencrypt_secret(token), key_id, token))
        except InvalidToken:
            report.unreadable_ids.append(key_id)
    if not updates:
        return
    table = connections[DEFAULT_DB_ALIAS].ops.quote_name(CardKey._meta.db_table)
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        # Conditional on the old token: a concurrent rotation's result is never overwritten.
        for new_token, key_id, old_token in updates:
            cursor.execute(
                f"UPDATE {table} SET secret_encrypted = %s WHERE id = %s AND secret_encrypted = %s",
                [new_token, key_id, old_token],
            )
            report.rotated += cursor.rowcount
