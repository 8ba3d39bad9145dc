import subprocess

from cardshop.env import BASE_DIR

ZH_PO = BASE_DIR / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


def _entries(*flags: str) -> str:
    result = subprocess.run(
        ["msgattrib", *flags, "--no-obsolete", "--no-wrap", str(ZH_PO)], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_chinese_catalogue_has_no_untranslated_or_fuzzy_entry():
    assert _entries("--untranslated") == "", "untranslated entries in zh_Hans (run makemessages and translate)"
    assert _entries("--only-fuzzy") == "", "fuzzy entries in zh_Hans (check and confirm their translation)"
