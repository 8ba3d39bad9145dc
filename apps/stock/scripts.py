"""The Lua scripts of the stock gate, each loaded once per process and called
by SHA (redis-py's Script falls back to loading it after a server restart)."""

from functools import cache
from pathlib import Path

from redis.commands.core import Script

from .redis import stock_redis

LUA_DIR = Path(__file__).resolve().parent / "lua"


@cache
def lua_script(name: str) -> Script:
    return stock_redis().register_script((LUA_DIR / f"{name}.lua").read_text())
