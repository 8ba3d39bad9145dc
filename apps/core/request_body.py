"""Request bodies, read one way by every view that reads one: the API's views,
the rate limits (they read the buyer's email before the view runs), DRF's
parser and the payment webhooks.

Two things a hostile body must not do here:

- nest deep enough that parsing or anything walking the result recurses past
  Python's limit (a RecursionError is not a ValueError, so it became a 500):
  json_loads refuses more than MAX_JSON_DEPTH levels, a ValueError like any
  other malformed JSON;
- exceed DATA_UPLOAD_MAX_MEMORY_SIZE and get Django's HTML 400 page:
  request_body raises RequestTooLarge, which the API answers as JSON and a
  webhook in its provider's terms.
"""

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from .errors import RequestTooLarge

# No body the shop reads nests this deep: a checkout is flat, and Stripe's
# events, the deepest, stay around ten levels.
MAX_JSON_DEPTH = 32

_PARSED = "_cardshop_json_body"


class JsonTooDeep(ValueError):
    """The JSON nests deeper than MAX_JSON_DEPTH."""


def json_loads(raw: bytes | str) -> Any:
    """Parse JSON text. Raises ValueError (json.JSONDecodeError, JsonTooDeep,
    UnicodeDecodeError) for anything that is not JSON of a sane depth."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonTooDeep("the JSON nests too deep") from None
    # Counting brackets runs in C and clears every ordinary body, so only a
    # body with many containers is walked.
    brackets = raw.count(b"[" if isinstance(raw, bytes) else "[") + raw.count(b"{" if isinstance(raw, bytes) else "{")
    if brackets > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise JsonTooDeep("the JSON nests too deep")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative: recursing here would hit the very limit this guards.
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def request_body(request: HttpRequest) -> bytes:
    """The raw body. Raises RequestTooLarge past DATA_UPLOAD_MAX_MEMORY_SIZE."""
    try:
        return request.body
    except RequestDataTooBig:
        raise RequestTooLarge() from None


def json_body(request: HttpRequest) -> dict:
    """The body as a JSON object ({} for an empty body), parsed once per
    request. Raises ValueError when it is not a JSON object (see json_loads),
    RequestTooLarge when it is too large to read."""
    parsed = getattr(request, _PARSED, None)
    if parsed is None:
        parsed = json_loads(request_body(request) or b"{}")
        if not isinstance(parsed, dict):
            raise ValueError("the body is not a JSON object")
        setattr(request, _PARSED, parsed)
    return parsed
