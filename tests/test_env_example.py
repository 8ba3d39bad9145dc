""".env.example documents exactly the variables the settings read, with their
local defaults, so it cannot drift from cardshop/settings/*.py."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"
# env("NAME"…), env.int("NAME"…), env.list(…), … and production's _required("NAME").
READ_PATTERN = re.compile(r"""\b(?:env(?:\.[a-z_]+)?|_required)\(\s*["']([A-Z][A-Z0-9_]*)["']""")
# "NAME=value" is set; "#NAME=value" is documented but optional (prose comments have "# ").
EXAMPLE_PATTERN = re.compile(r"^#?([A-Z][A-Z0-9_]*)=")


def variables_read_by_settings() -> set[str]:
    names = set()
    for path in (ROOT / "cardshop" / "settings").glob("*.py"):
        names |= set(READ_PATTERN.findall(path.read_text()))
    return names


def example_lines() -> list[str]:
    return EXAMPLE.read_text().splitlines()


def variables_in_example() -> list[str]:
    return [m.group(1) for line in example_lines() if (m := EXAMPLE_PATTERN.match(line))]


def test_the_settings_pattern_finds_the_variables_we_know_of():
    names = variables_read_by_settings()
    for known in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CARDKEY_ENCRYPTION_KEYS", "DJANGO_DEBUG"):
        assert known in names


def test_example_lists_every_variable_the_settings_read_and_no_other():
    in_example = variables_in_example()
    assert len(in_example) == len(set(in_example)), "a variable is listed twice"
    read = variables_read_by_settings()
    assert sorted(read - set(in_example)) == [], "add these to .env.example"
    assert sorted(set(in_example) - read) == [], "no settings file reads these; remove them from .env.example"


def test_every_variable_has_a_comment_line_above_it():
    lines = example_lines()
    for number, line in enumerate(lines):
        if EXAMPLE_PATTERN.match(line):
            above = lines[number - 1]
            assert above.startswith("# ") or EXAMPLE_PATTERN.match(above) is not None and above.startswith("#"), (
                f".env.example line {number + 1} ({line.split('=')[0]}) needs a one-line comment above it"
            )


def test_example_tells_how_to_generate_a_fernet_key():
    assert "Fernet.generate_key()" in EXAMPLE.read_text()


DUMP_SETTINGS = """
import json, sys, environ
if len(sys.argv) > 1:
    environ.Env.read_env(sys.argv[1], overwrite=True)
environ.Env.read_env = classmethod(lambda cls, *args, **kwargs: None)
import cardshop.settings.local as settings
print(json.dumps({name: repr(getattr(settings, name)) for name in dir(settings) if name.isupper()}))
"""


def local_settings(*args) -> dict:
    documented = set(variables_in_example()) | variables_read_by_settings()
    environment = {k: v for k, v in os.environ.items() if k not in documented}
    result = subprocess.run(
        [sys.executable, "-c", DUMP_SETTINGS, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_values_in_the_example_are_the_local_defaults():
    """Copying .env.example to .env changes nothing: every value is the default."""
    defaults = local_settings()
    from_example = local_settings(str(EXAMPLE))
    differing = {
        name: (defaults[name], from_example.get(name)) for name in defaults if defaults[name] != from_example.get(name)
    }
    assert differing == {}
