"""The JSON body of an API request, parsed once per request (the rate limits
read the buyer's email from it before the view reads the rest)."""

import json

from django.http import HttpRequest

_PARSED = "_cardshop_json_body"


def json_body(request: HttpRequest) -> dict:
    """The body as a JSON object ({} for an empty body). Raises ValueError
    when it is not valid JSON or not an object."""
    parsed = getattr(request, _PARSED, None)
    if parsed is None:
        parsed = json.loads(request.body or b"{}")
        if not isinstance(parsed, dict):
            raise ValueError("the body is not a JSON object")
        setattr(request, _PARSED, parsed)
    return parsed
