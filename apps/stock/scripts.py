"""The Lua scripts of the stock gate, each loaded once per process and called
by SHA (redis-py's Script falls back to loading it after a server restart).

Every script names all the Redis keys it touches in KEYS, and all of one
call's keys share one hash tag (one product's, or one coupon's): on a Redis
Cluster the call runs on the master owning that slot, and a key built inside
Lua would not be routed there (tests/test_gate_slots.py proves both)."""

from functools import cache
from pathlib import Path

from redis.commands.core import Script
from redis.exceptions import ResponseError

from .redis import gate_is_cluster, stock_redis

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


def lua_scripts_pipelined(calls: list[tuple[str, list[str], list]]) -> list:
    """Run script calls (name, keys, args) in one round trip per master, each
    call standing alone (no transaction); their replies in order."""
    client = stock_redis()
    if not gate_is_cluster(client):
        pipe = client.pipeline(transaction=False)
        for name, keys, args in calls:
            lua_script(name)(keys=keys, args=args, client=pipe)
        return pipe.execute()
    return _cluster_pipelined(client, calls)


def _cluster_pipelined(client, calls: list[tuple[str, list[str], list]]) -> list:
    """A cluster pipeline refuses EVALSHA, so: one plain pipeline per master,
    to the master owning each call's slot (a plain pipeline loads its
    scripts first). A call whose slot moved meanwhile (MOVED, ASK) or that
    failed runs again alone through the cluster client, which follows the
    move or raises the error; only for scripts that are no-ops when run twice."""
    replies: list = [None] * len(calls)
    by_master: dict[str, tuple] = {}
    for index, (_name, keys, _args) in enumerate(calls):
        node = client.get_node_from_key(keys[0])
        by_master.setdefault(node.name, (node, []))[1].append(index)
    for node, indexes in by_master.values():
        pipe = client.get_redis_connection(node).pipeline(transaction=False)
        for index in indexes:
            name, keys, args = calls[index]
            lua_script(name)(keys=keys, args=args, client=pipe)
        for index, reply in zip(indexes, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, ResponseError):
                name, keys, args = calls[index]
                reply = lua_script(name)(keys=keys, args=args)
            replies[index] = reply
    return replies
