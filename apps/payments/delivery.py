"""Delivering a notification to a webhook the way payment providers do: POST,
short timeout, a few quick retries on a timeout or a non-2xx answer. Longer
outages are the calling task's to retry."""

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from apps.core.breakers import BreakerOpen

from .exceptions import NotificationDeliveryFailed

# Calls to our own site must not go through an HTTP proxy set in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST and return the HTTP status. Raises OSError on a timeout or no connection."""
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def webhook_deliver(
    *,
    url: str,
    message: Callable[[], tuple[bytes, dict[str, str]]],
    attempts: int,
    timeout: float,
    post: Callable[[str, bytes, dict[str, str], float], int] = http_post,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST `message()` (called again for each attempt, so every attempt is
    signed with a fresh timestamp) until the webhook answers 2xx; returns that
    status. Raises NotificationDeliveryFailed with the last reason, at once
    when `post` raises BreakerOpen (retrying now would only fail fast again)."""
    reason = "no attempt made"
    for attempt in range(1, attempts + 1):
        body, headers = message()
        try:
            status = post(url, body, headers, timeout)
        except BreakerOpen as exc:
            raise NotificationDeliveryFailed(f"{url}: {exc}") from exc
        except OSError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= status < 300:
                return status
            reason = f"HTTP {status}"
        if attempt < attempts:
            sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
    raise NotificationDeliveryFailed(f"{url}: {reason} after {attempts} attempt(s)")
