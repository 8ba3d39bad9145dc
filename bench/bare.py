"""The reference the ceiling target was set against (bench only, never in the
app): a bare view that makes the checkout script's one Redis round trip and
nothing else, behind the same middleware in the same gunicorn. What our
checkout costs beyond it is our own Python; what it costs beyond /healthz is
the round trip itself."""

import itertools
import json
import os

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.stock import redis_keys as k
from apps.stock.redis import stock_redis
from apps.stock.scripts import lua_script
from apps.stock.services import checkout_script_arguments

_numbers = itertools.count()


def gate_copy_create(*, product_id: int) -> int:
    """A copy of a product's gate under an id no product has (so its
    reservations are never persisted), open and with stock to spare."""
    client = stock_redis()
    copy = 10**9 + product_id
    client.hset(k.rules_key(copy), mapping=client.hgetall(k.rules_key(product_id)))
    # Open whatever the live product's flags say now (the overload check may
    # have paused the sale the bench just drove).
    client.hset(k.rules_key(copy), mapping={"per_buyer_limit": 1_000_000, "overloaded": "0", "paused": "0"})
    client.set(k.stock_key(copy), 10**12)
    return copy


@csrf_exempt
@require_POST
def bare_evalsha(request):
    body = json.loads(request.body)
    n = f"{os.getpid()}-{next(_numbers)}"  # unique across gunicorn's processes
    keys, args = checkout_script_arguments(
        product_id=int(body["gate"]),
        order_no=f"bare-{n}",
        buyers=[f"e:bare-{n}"],
        quantity=1,
        token_hash="0" * 64,
        email=str(body["email"]),
    )
    reply = lua_script("checkout")(keys=keys, args=args)
    return JsonResponse({"code": reply[0].decode()}, status=202 if reply[0] == b"ok" else 409)
