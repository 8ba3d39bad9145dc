"""The hash-tag promise, read from the sources: every Lua script of the gate
touches only keys it is given in KEYS (a key name built inside Lua would not
be routed by Redis Cluster), and every Python caller gives a script keys of
one hash tag, hence one slot. tests/test_gate_cluster.py runs them all on a
real cluster and records the keys of every call."""

import ast
import re
from pathlib import Path

import pytest
from redis.crc import key_slot

from apps.stock import redis_keys
from apps.stock.scripts import LUA_DIR
from testing.processes import ROOT

SCRIPT_DIRS = [LUA_DIR, ROOT / "apps" / "orders" / "lua"]
LUA_FILES = sorted(path for folder in SCRIPT_DIRS for path in folder.glob("*.lua"))
# Commands whose every argument is a key; for the others only the first is.
ALL_KEYS_COMMANDS = {"DEL", "UNLINK", "EXISTS", "MGET", "TOUCH"}
NO_KEY_COMMANDS = {"TIME"}

CALL = re.compile(r"redis\.p?call\(\s*(?P<args>[^)]*)\)")
KEYS_ITEM = re.compile(r"^KEYS\[\d+\]$")


def _without_comments(source: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in source.splitlines())


BINDING = re.compile(r"local\s+([\w\s,]+?)\s*=\s*((?:KEYS\[\d+\]\s*,?\s*)+)")


def _aliases(source: str) -> set[str]:
    """Locals bound to KEYS[n]: `local a, b = KEYS[1], KEYS[2]` (over several lines too)."""
    aliases = set()
    for match in BINDING.finditer(source):
        names = [n.strip() for n in match.group(1).split(",")]
        values = [v.strip() for v in match.group(2).split(",") if v.strip()]
        assert len(names) == len(values), match.group(0)
        aliases |= set(names)
    return aliases


def _reassigned(source: str, name: str) -> bool:
    """Is an alias assigned anything besides its binding (`name = ...`, not `==`)?"""
    return re.search(rf"(?<![\w.]){name}\s*=(?!=)", BINDING.sub("", source)) is not None


def _key_arguments(args: str) -> tuple[str, list[str]]:
    parts = [part.strip() for part in args.split(",")]
    command = parts[0].strip("\"'").upper()
    if command in NO_KEY_COMMANDS:
        return command, []
    return command, parts[1:] if command in ALL_KEYS_COMMANDS else parts[1:2]


def test_the_sources_are_found():
    names = {path.stem for path in LUA_FILES}
    assert {"checkout", "warm", "paid", "release", "coupon_take", "mail_release"} <= names


@pytest.mark.parametrize("path", LUA_FILES, ids=lambda path: path.stem)
def test_every_key_a_script_touches_comes_from_KEYS(path: Path):
    source = _without_comments(path.read_text())
    aliases = _aliases(source)
    for alias in aliases:
        assert not _reassigned(source, alias), f"{path.name}: {alias} is bound to KEYS and then reassigned"
    calls = list(CALL.finditer(source))
    assert calls, f"{path.name}: no redis.call found (has the pattern gone stale?)"
    for call in calls:
        command, keys = _key_arguments(call.group("args"))
        assert re.fullmatch(r"[A-Z]+", command), f"{path.name}: command not a literal: {call.group(0)}"
        for key in keys:
            assert KEYS_ITEM.match(key) or key in aliases, (
                f"{path.name}: {command} on {key!r}, which is not one of KEYS: on a Redis Cluster "
                f"a key built inside the script is not routed to its master"
            )


def test_the_key_functions_put_one_products_keys_in_one_slot():
    """Every per-product key function, and every per-coupon one, tagged so
    that all of one product's (coupon's) keys share a slot."""
    source = Path(redis_keys.__file__).read_text()
    functions = [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    ]
    product_keys, coupon_keys = [], []
    for name in functions:
        function = getattr(redis_keys, name)
        params = list(function.__code__.co_varnames[: function.__code__.co_argcount])
        if params[:1] == ["product_id"]:
            extra = ["persist" if p == "endpoint" else "d" for p in params[1:]]
            product_keys.append(function(4242, *extra))
        elif params[:1] == ["coupon_id"]:
            extra = [7 if p == "product_id" else "d" for p in params[1:]]
            coupon_keys.append(function(99, *extra))
    assert len(product_keys) >= 10 and len(coupon_keys) >= 4, (product_keys, coupon_keys)
    assert all("{p:4242}" in key for key in product_keys), product_keys
    assert len({key_slot(key.encode()) for key in product_keys}) == 1
    assert all("{c:99}" in key for key in coupon_keys), coupon_keys
    assert len({key_slot(key.encode()) for key in coupon_keys}) == 1


def test_the_shipped_cluster_config_never_promotes_a_replica_on_its_own():
    """Replication is asynchronous: an automatic failover could sell from a
    replica that lacks reservations answered 202 (docs/gate-cluster.md)."""
    from testing.redis_cluster import cluster_options

    options = cluster_options()
    assert options[options.index("--cluster-replica-no-failover") + 1] == "yes"
    assert options[options.index("--cluster-require-full-coverage") + 1] == "no"
