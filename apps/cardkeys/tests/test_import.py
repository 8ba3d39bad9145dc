"""Importing keys: text and CSV, bad lines named by number, duplicates, whole-file refusals, secrecy, concurrency."""

import codecs
import logging
import threading

import pytest
from django.db import DatabaseError, connection, connections

from apps.cardkeys import bulk_store
from apps.cardkeys.exceptions import ImportRefused
from apps.cardkeys.models import CardKey, KeyBatch
from apps.catalog.tests.factories import ProductFactory

from .factories import CardKeyFactory
from .support import run_import, stored_secrets

pytestmark = pytest.mark.django_db


# --- text files ---------------------------------------------------------------


def test_plain_text_import_stores_each_key_encrypted_in_a_batch():
    product = ProductFactory()
    report = run_import(product, b"AAAA-1111\nBBBB-2222\nCCCC-3333\n")
    assert (report.accepted, report.duplicates, report.invalid) == (3, 0, 0)
    assert stored_secrets(product) == ["AAAA-1111", "BBBB-2222", "CCCC-3333"]
    batch = KeyBatch.objects.get(pk=report.batch_id)
    assert (batch.product_id, batch.accepted_count, batch.source_name) == (product.pk, 3, "keys.txt")
    assert set(CardKey.objects.values_list("status", flat=True)) == {CardKey.Status.AVAILABLE}
    assert "3 keys imported" in report.summary()


def test_utf8_bom_crlf_blank_lines_and_surrounding_whitespace():
    product = ProductFactory()
    data = codecs.BOM_UTF8 + "  KEY-ONE \r\n\r\n\t KEY-TWO\t\r\n   \r\n卡密-三\r\n".encode()
    report = run_import(product, data)
    assert (report.accepted, report.invalid, report.duplicates) == (3, 0, 0)
    assert stored_secrets(product) == ["KEY-ONE", "KEY-TWO", "卡密-三"]


def test_last_line_without_newline_is_imported():
    product = ProductFactory()
    assert run_import(product, b"A-1\nA-2").accepted == 2


def test_line_numbers_count_blank_lines():
    product = ProductFactory()
    report = run_import(product, b"A-1\n\nA-1\n")
    assert report.duplicate_lines == [3]


# --- CSV ----------------------------------------------------------------------


def test_csv_with_recognised_header_reads_that_column():
    product = ProductFactory()
    data = '序号,卡密,备注\n1,CSV-KEY-1,first\n2,"CSV-KEY-2",second\n'.encode()
    report = run_import(product, data, "keys.csv")
    assert report.accepted == 2
    assert stored_secrets(product) == ["CSV-KEY-1", "CSV-KEY-2"]


def test_csv_named_column_is_case_insensitive():
    product = ProductFactory()
    data = b"serial,Activation,note\n1,ACT-1,x\n2,ACT-2,y\n"
    report = run_import(product, data, "KEYS.CSV", column="activation")
    assert stored_secrets(product) == ["ACT-1", "ACT-2"]
    assert report.accepted == 2


def test_csv_without_header_uses_the_first_column():
    product = ProductFactory()
    report = run_import(product, b"FIRST-1,note\nFIRST-2,note\n", "keys.csv")
    assert report.accepted == 2
    assert stored_secrets(product) == ["FIRST-1", "FIRST-2"]


def test_csv_named_column_missing_from_header_is_refused():
    product = ProductFactory()
    with pytest.raises(ImportRefused) as refused:
        run_import(product, b"code,note\nK-1,x\n", "keys.csv", column="secret")
    assert refused.value.code == "import_refused"
    assert "secret" in str(refused.value.detail)
    assert not KeyBatch.objects.exists() and not CardKey.objects.exists()


def test_csv_row_with_empty_or_missing_key_cell_is_invalid():
    product = ProductFactory()
    report = run_import(product, b"note,code\nx,K-1\ny,\nz\n", "keys.csv")
    assert report.accepted == 1
    assert [n for n, _ in report.invalid_lines] == [3, 4]


def test_pasted_text_with_a_column_name_is_read_as_csv():
    product = ProductFactory()
    report = run_import(product, b"id,code\n1,P-1\n", file_name="", column="code")
    assert stored_secrets(product) == ["P-1"]
    assert report.accepted == 1


def test_column_name_for_a_text_file_is_refused():
    product = ProductFactory()
    with pytest.raises(ImportRefused):
        run_import(product, b"K-1\n", "keys.txt", column="code")


# --- invalid lines (the rest of the batch still imports) ----------------------


def test_too_long_line_is_refused_with_its_line_number(settings):
    product = ProductFactory()
    limit = settings.CARDKEY_MAX_LENGTH
    data = b"OK-1\n" + b"x" * (limit + 1) + b"\n" + b"y" * limit + b"\n"
    report = run_import(product, data)
    assert report.accepted == 2
    assert report.invalid == 1
    number, reason = report.invalid_lines[0]
    assert number == 2 and "longer than 512" in reason


def test_enormous_line_is_refused_without_breaking_the_following_lines():
    product = ProductFactory()
    data = b"OK-1\n" + b"z" * (3 * 1024 * 1024) + b"\nOK-2\n"
    report = run_import(product, data)
    assert report.accepted == 2
    assert report.invalid_lines == [(2, "line too long")]


def test_control_characters_are_refused():
    product = ProductFactory()
    data = b"GOOD-1\nBAD\x07KEY\nTAB\tKEY\nZERO\xe2\x80\x8bWIDTH\nGOOD-2\n"
    report = run_import(product, data)
    assert report.accepted == 2
    assert [n for n, _ in report.invalid_lines] == [2, 3, 4]
    assert all("control" in reason for _, reason in report.invalid_lines)


def test_undecodable_line_is_refused_and_the_rest_imports():
    product = ProductFactory()
    data = b"GOOD-1\nBAD-\xff\xfe-KEY\nGOOD-2\n"
    report = run_import(product, data)
    assert report.accepted == 2
    assert report.invalid_lines == [(2, "not valid UTF-8")]


def test_report_lists_the_first_twenty_lines_but_counts_all(settings):
    settings.CARDKEY_IMPORT_CHUNK_SIZE = 7
    product = ProductFactory()
    CardKeyFactory(product=product, secret="DUP")
    data = b"".join(b"DUP\n" if i % 2 else b"K-%d\n" % i for i in range(1, 61)) + b"\x01\n" * 25
    report = run_import(product, data)
    assert report.accepted == 30
    assert report.duplicates == 30
    assert report.duplicate_lines == list(range(1, 40, 2))
    assert report.invalid == 25
    assert [n for n, _ in report.invalid_lines] == list(range(61, 81))
    assert "and 10 more" in "\n".join(report.details())


# --- duplicates ---------------------------------------------------------------


def test_duplicates_within_the_batch_are_skipped_with_line_numbers():
    product = ProductFactory()
    report = run_import(product, b"K-1\nK-2\nK-1\n K-2 \nK-3\nK-1\n")
    assert (report.accepted, report.duplicates) == (3, 3)
    assert report.duplicate_lines == [3, 4, 6]
    assert KeyBatch.objects.get(pk=report.batch_id).duplicate_count == 3


def test_duplicates_of_stored_keys_are_skipped_across_chunks(settings):
    settings.CARDKEY_IMPORT_CHUNK_SIZE = 2
    product = ProductFactory()
    CardKeyFactory(product=product, secret="OLD-1")
    CardKeyFactory(product=product, secret="OLD-2")
    report = run_import(product, b"NEW-1\nOLD-2\nNEW-2\nNEW-3\nOLD-1\nNEW-1\n")
    assert (report.accepted, report.duplicates) == (3, 3)
    assert report.duplicate_lines == [2, 5, 6]
    assert CardKey.objects.filter(product=product).count() == 5


def test_full_width_variant_is_a_duplicate():
    product = ProductFactory()
    report = run_import(product, "ABC-123\nＡＢＣ－１２３\n".encode())
    assert (report.accepted, report.duplicates) == (1, 1)


def test_same_key_may_be_stored_for_another_product():
    first, second = ProductFactory(), ProductFactory()
    run_import(first, b"SHARED\n")
    assert run_import(second, b"SHARED\n").accepted == 1


# --- whole-file refusals store nothing ----------------------------------------


@pytest.mark.parametrize(
    ("file_name", "data", "words"),
    [
        ("keys.xlsx", b"K-1\n", ".txt and .csv"),
        ("keys", b"K-1\n", ".txt and .csv"),
        ("keys.txt", b"K-1\nK-2\n\x00\x01\x02\x03binary\xff\xd8\n", "binary"),
        ("keys.csv", b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "binary"),
        ("keys.txt", codecs.BOM_UTF16_LE + "K-1\r\nK-2\r\n".encode("utf-16-le"), "UTF-8"),
        ("keys.txt", codecs.BOM_UTF16_BE + "K-1\nK-2\n".encode("utf-16-be"), "UTF-8"),
        ("keys.txt", "K-1\nK-2\nK-3\n".encode("utf-16-le"), "UTF-8"),
        ("keys.txt", codecs.BOM_UTF32_LE + "K-1\n".encode("utf-32-le"), "UTF-8"),
        ("keys.txt", "卡密一\n卡密二\n卡密三\nOK\n".encode("gbk"), "UTF-8"),
        ("keys.txt", b"", "no keys"),
        ("keys.txt", b"\n  \r\n\n", "no keys"),
        ("keys.csv", "卡密\n".encode(), "no keys"),
    ],
)
def test_whole_file_problems_refuse_the_import_and_store_nothing(file_name, data, words):
    product = ProductFactory()
    with pytest.raises(ImportRefused) as refused:
        run_import(product, data, file_name)
    assert words in str(refused.value.detail)
    assert not KeyBatch.objects.exists()
    assert not CardKey.objects.exists()


def test_binary_data_late_in_a_large_file_refuses_everything(settings):
    settings.CARDKEY_IMPORT_CHUNK_SIZE = 100
    product = ProductFactory()
    # Past the first 1 MB block, so after some chunks were already inserted.
    data = b"".join(b"K-%06d-" % i + b"x" * 200 + b"\n" for i in range(6000)) + b"\x00\x00\n"
    with pytest.raises(ImportRefused):
        run_import(product, data)
    assert not CardKey.objects.exists()


def test_nul_byte_is_refused_with_its_line_number():
    product = ProductFactory()
    CardKeyFactory(product=product, secret="STORED")
    with pytest.raises(ImportRefused) as refused:
        run_import(product, b"K-1\nK-2\n\nK-3\x00X\nK-4\n")
    assert "NUL byte on line 4" in str(refused.value.detail)
    assert stored_secrets(product) == ["STORED"] and KeyBatch.objects.count() == 1


def test_nul_byte_past_the_first_block_is_refused_with_its_line_number():
    product = ProductFactory()
    data = b"".join(b"K-%06d-" % i + b"x" * 200 + b"\n" for i in range(6000)) + b"AB\x00CD\n"
    with pytest.raises(ImportRefused, match="NUL byte on line 6001"):
        run_import(product, data)
    assert not CardKey.objects.exists()


def test_a_file_whose_lines_are_all_refused_stores_no_batch():
    product = ProductFactory()
    report = run_import(product, b"BAD\x07ONE\n\nBAD\x01TWO\n")
    assert (report.accepted, report.invalid, report.batch_id) == (0, 2, None)
    assert [n for n, _ in report.invalid_lines] == [1, 3]
    assert not KeyBatch.objects.exists() and not CardKey.objects.exists()


def test_a_file_of_stored_duplicates_only_stores_no_batch():
    product = ProductFactory()
    CardKeyFactory(product=product, secret="OLD-1")
    report = run_import(product, b"OLD-1\nOLD-1\n")
    assert (report.accepted, report.duplicates, report.batch_id) == (0, 2, None)
    assert KeyBatch.objects.count() == 1  # the stored key's own


def test_file_over_the_size_limit_is_refused(settings):
    settings.CARDKEY_IMPORT_MAX_BYTES = 2 * 1024 * 1024
    product = ProductFactory()
    data = b"".join(b"KEY-%06d-" % i + b"x" * 480 + b"\n" for i in range(5000))
    with pytest.raises(ImportRefused, match="larger than"):
        run_import(product, data)
    assert not CardKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_database_error_mid_import_stores_nothing(settings, monkeypatch):
    settings.CARDKEY_IMPORT_CHUNK_SIZE = 3
    product = ProductFactory()
    real_insert = bulk_store._insert_rows
    calls = []

    def insert_then_fail(cursor, sql, params):
        calls.append(len(params) // 2)
        if len(calls) == 2:
            raise DatabaseError("disk full")
        real_insert(cursor, sql, params)

    monkeypatch.setattr(bulk_store, "_insert_rows", insert_then_fail)
    with pytest.raises(DatabaseError):
        run_import(product, b"".join(b"K-%d\n" % i for i in range(10)))
    assert calls == [3, 3]
    assert not KeyBatch.objects.exists()
    assert not CardKey.objects.exists()


# --- secrets stay secret ------------------------------------------------------


def test_plaintext_never_reaches_the_database_or_the_logs(caplog):
    product = ProductFactory()
    secret = "PLAINTEXT-SECRET-7f3a9c"
    with caplog.at_level(logging.DEBUG):
        run_import(product, f"{secret}\n{secret}\n".encode())
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted, fingerprint FROM cardkeys_cardkey")
        rows = cursor.fetchall()
    assert len(rows) == 1
    token, fingerprint = rows[0]
    assert secret not in token and secret not in fingerprint
    assert secret.lower() not in token.lower()
    assert secret not in caplog.text
    assert CardKey.objects.get().secret == secret


# --- concurrency --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_imports_never_duplicate_and_count_exactly(settings):
    settings.CARDKEY_IMPORT_CHUNK_SIZE = 500
    product = ProductFactory()
    batches = {
        "a": b"".join(b"KEY-%06d\n" % i for i in range(0, 3000)),
        "b": b"".join(b"KEY-%06d\n" % i for i in range(1500, 4500)),
    }
    barrier = threading.Barrier(2)
    reports, errors = {}, []

    def worker(name):
        try:
            barrier.wait(timeout=10)
            reports[name] = run_import(product, batches[name])
        except Exception as exc:  # reported below; a thread cannot fail the test itself
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(name,)) for name in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert CardKey.objects.filter(product=product).count() == 4500
    assert CardKey.objects.values("fingerprint").distinct().count() == 4500
    assert reports["a"].accepted + reports["b"].accepted == 4500
    assert reports["a"].duplicates + reports["b"].duplicates == 1500
    for report in reports.values():
        assert report.accepted == CardKey.objects.filter(batch_id=report.batch_id).count()
