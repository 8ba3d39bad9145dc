"""The pinned requirements*.txt are compiled from requirements*.in (pip-tools,
`make requirements`): a dependency added to a .in file but not compiled, or a
pin edited by hand in one layer only, fails here instead of in a fresh clone."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["requirements", "requirements-dev", "requirements-bench"]
NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(==\s*(\S+))?")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_dependencies(layer: str) -> dict[str, str | None]:
    """Name -> exact version where the .in file pins one."""
    found = {}
    for line in (ROOT / f"{layer}.in").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = NAME.match(line)
        assert match, f"{layer}.in: cannot read {line!r}"
        found[normalized(match.group(1))] = match.group(4)
    return found


def pins(layer: str) -> dict[str, str]:
    text = (ROOT / f"{layer}.txt").read_text()
    return {normalized(name): version for name, version in re.findall(r"^([A-Za-z0-9][^=\s]*)==(\S+)", text, re.M)}


@pytest.mark.parametrize("layer", LAYERS)
def test_every_direct_dependency_is_compiled_into_the_pins(layer):
    compiled = pins(layer)
    text = (ROOT / f"{layer}.txt").read_text()
    assert "#    make requirements" in text, f"{layer}.txt was not written by `make requirements`"
    for name, version in direct_dependencies(layer).items():
        assert name in compiled, f"{name} is in {layer}.in but not in {layer}.txt: run `make requirements`"
        assert version in (None, compiled[name]), f"{layer}.in pins {name}=={version}, {layer}.txt {compiled[name]}"
    assert len(re.findall(rf"# via .*-r {layer}\.in$|#   -r {layer}\.in$", text, re.M)) == len(
        direct_dependencies(layer)
    ), f"{layer}.txt and {layer}.in list different direct dependencies: run `make requirements`"


def test_the_layers_agree_on_every_shared_pin():
    """dev is compiled within the runtime pins, bench within both (`-c`)."""
    runtime, dev, bench = (pins(layer) for layer in LAYERS)
    for upper, lower in ((dev, runtime), (bench, runtime), (bench, dev)):
        assert {
            name: (version, lower[name]) for name, version in upper.items() if lower.get(name, version) != version
        } == {}


def test_make_installs_the_runtime_and_dev_pins_and_reinstalls_when_they_change():
    makefile = (ROOT / "Makefile").read_text()
    assert "$(VENV)/.installed: requirements.txt requirements-dev.txt" in makefile
    assert "install -q -r requirements.txt -r requirements-dev.txt" in makefile
    assert "$(VENV)/.bench-installed: requirements-bench.txt" in makefile
