"""One language per command: every shop command answers in settings.LANGUAGE_CODE,
or in the language its --lang names, whole (output, errors and --help)."""

import io
import os
import re
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command, get_commands, load_command_class
from django.utils import translation

from apps.catalog.tests.factories import ProductFactory
from apps.core.management.base import ShopCommand
from apps.orders.tests.support import product_with_keys
from cardshop.env import BASE_DIR

CHINESE = re.compile(r"[\u4e00-\u9fff]")
KEYS = b"LANG-KEY-0001\nLANG-KEY-0002\nLANG-KEY-0001\n"


def run(*args, **kwargs) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue() + err.getvalue()


def _english(text: str) -> bool:
    return bool(text.strip()) and not CHINESE.search(text)


def _chinese(text: str) -> bool:
    return bool(CHINESE.search(text))


def test_every_shop_command_takes_lang():
    shop_commands = {name: app for name, app in get_commands().items() if app.startswith("apps.")}
    assert {"import_keys", "create_product", "warm_stock", "reconcile", "seed_demo"} <= set(shop_commands)
    for name, app in shop_commands.items():
        assert isinstance(load_command_class(app, name), ShopCommand), name


@pytest.mark.django_db
@pytest.mark.parametrize(("lang", "reads"), [("en", _english), ("zh-hans", _chinese)])
def test_import_keys(lang, reads):
    ProductFactory(sku="LANG-IMPORT")
    out = run("import_keys", "--lang", lang, "--sku", "LANG-IMPORT", "--no-progress", "-", stdin=io.BytesIO(KEYS))
    assert reads(out), out
    assert ("2 keys imported" in out) == (lang == "en")
    with pytest.raises(CommandError) as refused:
        run("import_keys", "--lang", lang, "--sku", "NO-SUCH-SKU", "-", stdin=io.BytesIO(KEYS))
    assert reads(str(refused.value)), refused.value


@pytest.mark.django_db
@pytest.mark.parametrize(("lang", "reads"), [("en", _english), ("zh-hans", _chinese)])
def test_create_product(lang, reads):
    out = run("create_product", "--lang", lang, "--sku", f"LANG-{lang}", "--title", "Card", "--price", "9.90")
    assert reads(out), out
    with pytest.raises(CommandError) as refused:
        run("create_product", "--lang", lang, "--sku", "LANG-BAD", "--title", "Card", "--price", "nine")
    assert reads(str(refused.value)), refused.value


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("lang", "reads"), [("en", _english), ("zh-hans", _chinese)])
def test_warm_stock_and_reconcile(lang, reads):
    product = product_with_keys(keys=3, warm=False, sku=f"LANG-WARM-{lang}")
    out = run("warm_stock", "--lang", lang, "--sku", product.sku)
    assert reads(out), out
    assert (f"{product.sku}: warmed, stock 3" in out) == (lang == "en")
    out = run("reconcile", "--lang", lang)
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) >= 10 and all(reads(line) for line in lines), out


@pytest.mark.django_db
def test_without_lang_the_command_follows_language_code(settings):
    ProductFactory(sku="LANG-DEFAULT")
    translation.deactivate()  # as under manage.py: no language active
    settings.LANGUAGE_CODE = "en"
    assert _english(run("warm_stock", "--sku", "LANG-DEFAULT"))
    settings.LANGUAGE_CODE = "zh-hans"
    translation.deactivate()
    assert _chinese(run("warm_stock", "--sku", "LANG-DEFAULT"))


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", ["Import card keys from a .txt or .csv file", "SKU of the product the keys belong to."]),
        ("zh-hans", ["从 .txt 或 .csv 文件", "卡密所属商品的 SKU。", "命令输出信息的语言"]),
    ],
)
def test_help_follows_lang(lang, expected, capsys):
    command = load_command_class("apps.cardkeys", "import_keys")
    with pytest.raises(SystemExit):
        command.run_from_argv(["manage.py", "import_keys", "--lang", lang, "--help"])
    text = capsys.readouterr().out
    assert all(part in text for part in expected), text


def test_from_the_shell_the_default_is_language_code():
    """manage.py with no --lang: settings.LANGUAGE_CODE (zh-hans in the test settings)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cardshop.settings.test"}
    for args, reads in (([], _chinese), (["--lang", "en"], _english)):
        result = subprocess.run(
            [sys.executable, "manage.py", "create_product", *args, "--sku", "S", "--title", "T", "--price", "nine"],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert reads(result.stderr.replace("CommandError", "")), result.stderr
