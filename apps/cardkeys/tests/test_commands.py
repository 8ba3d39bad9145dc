import io

import pytest
from django.core.management import CommandError, call_command

from apps.cardkeys.models import CardKey, KeyBatch
from apps.cardkeys.progress import ProgressPrinter
from apps.catalog.tests.factories import ProductFactory

from .factories import CardKeyFactory

pytestmark = pytest.mark.django_db


def import_keys(*args, **kwargs) -> str:
    out = io.StringIO()
    kwargs.setdefault("stderr", io.StringIO())
    call_command("import_keys", *args, stdout=out, **kwargs)
    return out.getvalue()


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_bar_on_a_terminal(tmp_path, settings, monkeypatch):
    settings.CARDKEY_IMPORT_CHUNK_SIZE = 100
    monkeypatch.setattr(ProgressPrinter, "BAR_INTERVAL", 0)
    ProductFactory(sku="CMD-BAR")
    path = tmp_path / "keys.txt"
    path.write_bytes(b"".join(b"BAR-%05d\n" % i for i in range(1000)) + b"BAD\x07\nBAR-00001\n")
    terminal = Terminal()
    output = import_keys("--sku", "CMD-BAR", str(path), stderr=terminal)
    assert "1000 keys imported" in output
    shown = terminal.getvalue()
    assert shown.count("\r[") >= 5  # redrawn in place
    assert "[##############################] 100%" in shown
    assert "1002 lines read, 1000 stored, 1 duplicates, 1 refused" in shown
    assert shown.endswith("\n") and "ETA" in shown


def test_progress_is_plain_lines_when_not_on_a_terminal(tmp_path, settings, monkeypatch):
    settings.CARDKEY_IMPORT_CHUNK_SIZE = 100
    monkeypatch.setattr(ProgressPrinter, "PLAIN_INTERVAL", 0)
    ProductFactory(sku="CMD-PLAIN")
    path = tmp_path / "keys.txt"
    path.write_bytes(b"".join(b"PLAIN-%05d\n" % i for i in range(500)))
    log = io.StringIO()
    import_keys("--sku", "CMD-PLAIN", str(path), stderr=log)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) >= 4
    assert "100 lines read" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("100%") and "500 lines read, 500 stored" in lines[-1] and "took" in lines[-1]


def test_all_lines_refused_exits_non_zero_and_stores_no_batch(tmp_path):
    ProductFactory(sku="CMD-ALLBAD")
    path = tmp_path / "keys.txt"
    path.write_bytes(b"BAD\x07ONE\nBAD\x01TWO\n")
    with pytest.raises(CommandError, match="no batch was stored"):
        import_keys("--sku", "CMD-ALLBAD", str(path))
    assert not KeyBatch.objects.exists()


def test_imports_a_file_and_prints_the_report(tmp_path):
    product = ProductFactory(sku="CMD-1")
    CardKeyFactory(product=product, secret="OLD")
    path = tmp_path / "keys.txt"
    path.write_bytes(b"NEW-1\nOLD\nNEW-2\nNEW-1\n" + b"x" * 600 + b"\n")
    output = import_keys("--sku", "CMD-1", str(path))
    assert "2 keys imported, 2 duplicates skipped, 1 invalid lines refused." in output
    assert "Duplicate lines: 2, 4" in output
    assert "line 5: longer than 512 characters" in output
    assert CardKey.objects.filter(product=product).count() == 3


def test_reads_stdin_with_a_dash():
    product = ProductFactory(sku="CMD-STDIN")
    output = import_keys("--sku", "CMD-STDIN", "-", stdin=io.BytesIO(b"S-1\r\nS-2\r\n"))
    assert "2 keys imported" in output
    assert sorted(k.secret for k in CardKey.objects.filter(product=product)) == ["S-1", "S-2"]


def test_stdin_with_a_column_is_csv():
    ProductFactory(sku="CMD-CSV")
    output = import_keys("--sku", "CMD-CSV", "--column", "code", "-", stdin=io.BytesIO(b"n,code\n1,C-1\n"))
    assert "1 keys imported" in output
    assert CardKey.objects.get().secret == "C-1"


def test_csv_file_with_named_column(tmp_path):
    ProductFactory(sku="CMD-CSV2")
    path = tmp_path / "export.csv"
    path.write_bytes(b"serial,pin\n1,PIN-1\n2,PIN-2\n")
    assert "2 keys imported" in import_keys("--sku", "CMD-CSV2", "--column", "pin", str(path))


def test_refused_import_exits_non_zero_with_the_reason(tmp_path):
    ProductFactory(sku="CMD-BAD")
    path = tmp_path / "keys.txt"
    path.write_bytes("K-1\nK-2\n".encode("utf-16"))
    with pytest.raises(CommandError, match="UTF-8"):
        import_keys("--sku", "CMD-BAD", str(path))
    assert not KeyBatch.objects.exists()


def test_missing_csv_column_is_refused(tmp_path):
    ProductFactory(sku="CMD-COL")
    path = tmp_path / "keys.csv"
    path.write_bytes(b"code\nK-1\n")
    with pytest.raises(CommandError, match="no column"):
        import_keys("--sku", "CMD-COL", "--column", "pin", str(path))


def test_unknown_sku_is_a_clear_error(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_bytes(b"K-1\n")
    with pytest.raises(CommandError, match="Unknown SKU"):
        import_keys("--sku", "NOPE", str(path))


def test_unreadable_file_is_a_clear_error(tmp_path):
    ProductFactory(sku="CMD-MISSING")
    with pytest.raises(CommandError, match="Cannot read"):
        import_keys("--sku", "CMD-MISSING", str(tmp_path / "absent.txt"))


def test_refusal_exits_with_status_1_from_the_command_line(tmp_path):
    # run_from_argv is what `manage.py import_keys` runs: a CommandError is exit status 1.
    from django.core.management import ManagementUtility

    ProductFactory(sku="CMD-EXIT")
    path = tmp_path / "keys.doc"
    path.write_bytes(b"K-1\n")
    with pytest.raises(SystemExit) as exited:
        ManagementUtility(["manage.py", "import_keys", "--sku", "CMD-EXIT", str(path)]).execute()
    assert exited.value.code == 1


def test_keys_another_product_holds_are_imported_with_a_warning_naming_their_lines(tmp_path):
    other = ProductFactory(sku="CMD-OTHER")
    CardKeyFactory(product=other, secret="SHARED-1")
    CardKeyFactory(product=other, secret="SHARED-2")
    product = ProductFactory(sku="CMD-HERE")
    path = tmp_path / "keys.txt"
    path.write_bytes(b"FRESH-1\nSHARED-1\nFRESH-2\nSHARED-2\n")
    # The product's first import (no lookups among its own keys) warns too.
    output = import_keys("--sku", "CMD-HERE", "--no-progress", str(path))
    assert "4 keys imported, 0 duplicates skipped" in output
    assert "Warning: 2 imported keys already exist in other products (CMD-OTHER), lines 2, 4." in output
    assert CardKey.objects.filter(product=product).count() == 4  # a warning, not a refusal

    # A later import: keys of its own are duplicates (skipped), the other's only warned about.
    path.write_bytes(b"FRESH-1\nSHARED-1\nFRESH-3\n")
    output = import_keys("--sku", "CMD-HERE", "--no-progress", str(path))
    assert "1 keys imported, 2 duplicates skipped" in output
    assert "Warning" not in output  # SHARED-1 is this product's own duplicate now
    assert "Duplicate lines: 1, 2" in output


def test_no_warning_when_no_other_product_holds_the_keys(tmp_path):
    ProductFactory(sku="CMD-ALONE")
    CardKeyFactory(secret="UNRELATED")
    path = tmp_path / "keys.txt"
    path.write_bytes(b"A-1\nA-2\n")
    output = import_keys("--sku", "CMD-ALONE", "--no-progress", str(path))
    assert "2 keys imported" in output and "Warning" not in output
