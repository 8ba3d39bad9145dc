"""The Lua scripts of the stock gate, each loaded once per process and called
by SHA (redis-py's Script falls back to loading it after a server restart).

Every script names all the Redis keys it touches in KEYS, and all of one
call's keys share one hash tag (one product's, or one coupon's): on a Redis
Cluster the call runs on the master owning that slot, and a key built inside
Lua would not be routed there (tests/test_gate_slots.py proves both)."""

from functools import cache
from pathlib import Path

from redis.commands.core import Script
from redis.exceptions import RedisError, ResponseError

from .redis import SLOT_MOVED_ERRORS, gate_is_cluster, stock_redis

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
    return GateScript(client, _source(name))


class GateScript(Script):
    """On a Redis Cluster, a script the master lacks (restarted, or new) is
    loaded on the master owning the call's slot only: redis-py's
    RedisCluster.script_load goes to every master, so one hung or dead
    master would fail calls on all the others."""

    def __call__(self, keys=None, args=None, client=None):
        if keys and (client is None or gate_is_cluster(client)):
            target = self.registered_client if client is None else client
            if gate_is_cluster(target):
                client = _OneSlot(target, keys[0])
        return super().__call__(keys=keys, args=args, client=client)


class _OneSlot:
    """The cluster client as Script.__call__ uses it, for calls on one key's
    slot: EVALSHA routed (and redirected) by the cluster client, SCRIPT LOAD
    to that slot's master alone."""

    def __init__(self, cluster, key):
        self.cluster, self.key = cluster, key

    def evalsha(self, sha, numkeys, *keys_and_args):
        return self.cluster.evalsha(sha, numkeys, *keys_and_args)

    def script_load(self, source):
        node = self.cluster.get_node_from_key(self.key)
        return self.cluster.get_redis_connection(node).script_load(source)


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
    scripts first), each master in its own try so a dead one does not stop
    the others' calls; then the first error is raised. Only a call whose
    slot moved meanwhile (MOVED, ASK, TRYAGAIN: it did not run) runs again,
    alone through the cluster client, which follows the move; a script
    that ran and failed is never run twice."""
    replies: list = [None] * len(calls)
    by_master: dict[str, tuple] = {}
    for index, (_name, keys, _args) in enumerate(calls):
        node = client.get_node_from_key(keys[0])
        by_master.setdefault(node.name, (node, []))[1].append(index)
    failure: RedisError | None = None
    for node, indexes in by_master.values():
        try:
            pipe = client.get_redis_connection(node).pipeline(transaction=False)
            for index in indexes:
                name, keys, args = calls[index]
                lua_script(name)(keys=keys, args=args, client=pipe)
            answers = pipe.execute(raise_on_error=False)
        except RedisError as exc:
            failure = failure or exc
            continue
        for index, reply in zip(indexes, answers, strict=True):
            if isinstance(reply, SLOT_MOVED_ERRORS):
                name, keys, args = calls[index]
                reply = lua_script(name)(keys=keys, args=args)
            elif isinstance(reply, ResponseError):
                failure = failure or reply  # it ran (and failed): never twice
            replies[index] = reply
    if failure is not None:
        raise failure
    return replies
