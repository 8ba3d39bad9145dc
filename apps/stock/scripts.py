"""The Lua scripts of the stock gate, each loaded once per process and called
by SHA (redis-py's Script falls back to loading it after a server restart).

Every script names all the Redis keys it touches in KEYS, and all of one
call's keys share one hash tag (one product's, or one coupon's): on a Redis
Cluster the call runs on the master owning that slot, and a key built inside
Lua would not be routed there (tests/test_gate_slots.py proves both)."""

from functools import cache
from pathlib import Path

from redis.commands.core import Script
from redis.exceptions import NoScriptError

from .redis import stock_redis

LUA_DIR = Path(__file__).resolve().parent / "lua"


def lua_script(name: str) -> Script:
    """The script, registered on the gate's current client (the client
    changes only when a test points the settings at another server)."""
    return _registered(name, stock_redis())


@cache
def _source(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()


@cache
def _registered(name: str, client) -> Script:
    return client.register_script(_source(name))


def lua_script_forget() -> None:
    """Forget the registered scripts (a test that changed the gate's server)."""
    _registered.cache_clear()


def lua_scripts_pipelined(calls: list[tuple[str, list[str], list]]) -> list:
    """Run script calls (name, keys, args) in one pipeline, one round trip per
    master; each call stands alone (no transaction). A cluster pipeline,
    unlike a plain one, does not load its scripts first: a master restarted
    since they were loaded answers NOSCRIPT, so the scripts are loaded on
    every master and the whole pipeline runs again. Only for scripts that
    are no-ops when run twice."""
    try:
        return _pipelined(calls)
    except NoScriptError:
        for name in {name for name, _keys, _args in calls}:
            stock_redis().script_load(_source(name))
        return _pipelined(calls)


def _pipelined(calls: list[tuple[str, list[str], list]]) -> list:
    pipe = stock_redis().pipeline(transaction=False)
    for name, keys, args in calls:
        lua_script(name)(keys=keys, args=args, client=pipe)
    return pipe.execute()
