"""Per-client rate limits (django-ratelimit on the shared Redis cache).

A view lists its limits once and gets one consistent answer when a client is
over any of them: 429 `rate_limited` with Retry-After, as JSON for the API and
as a translated page for the storefront. The check runs before the view, so a
refused request reserves nothing.

Each limit's rate is a setting read per request ("30/m"; empty turns that one
limit off); RATELIMIT_ENABLE=false turns them all off (django-ratelimit's own
switch), e.g. for a benchmark that sends a crowd from one address. The
per-buyer purchase limit is not one of these: it is counted in the checkout
script and always holds.
"""

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

from apps.core import metrics
from apps.core.client_ip import client_ip, ip_counted
from apps.core.errors import RateLimited, shop_error_response
from apps.core.request_body import json_body
from apps.orders.identity import email_normalise

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    """One counter. `group` is shared by every view that spends the same
    budget (the storefront form and the API both spend "checkout-ip").
    `key` gives the value counted by, e.g. the client IP or the buyer's email;
    a request it returns nothing for is not counted by this limit."""

    group: str
    rate_setting: str
    key: Callable[[HttpRequest], str | None]


def by_ip(request: HttpRequest) -> str:
    return ip_counted(client_ip(request))


def by_buyer(request: HttpRequest) -> str | None:
    """The buyer's email, from the storefront form or the API's JSON body,
    normalised as checkout does. (django-ratelimit stores a hash of it.)"""
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        email = request.POST.get("email")
    else:
        try:
            email = json_body(request).get("email")
        except ValueError:
            return None
    if not isinstance(email, str) or not email.strip():
        return None
    return email_normalise(email)


# The limits the views apply. Storefront and API share each budget.
CHECKOUT_IP = Limit("checkout-ip", "RATELIMIT_CHECKOUT_IP", by_ip)
CHECKOUT_BUYER = Limit("checkout-buyer", "RATELIMIT_CHECKOUT_BUYER", by_buyer)
LOOKUP_IP = Limit("lookup-ip", "RATELIMIT_LOOKUP_IP", by_ip)
PAY_IP = Limit("pay-ip", "RATELIMIT_PAY_IP", by_ip)
# The product page's live total (POST /api/v1/coupons/check): also what keeps
# it from being a fast coupon-code guesser.
PRICE_IP = Limit("price-ip", "RATELIMIT_PRICE_IP", by_ip)


def _usage(request: HttpRequest, limit: Limit) -> dict | None:
    if not settings.RATELIMIT_ENABLE:
        return None  # django-ratelimit would say so too, after we computed the key
    rate = getattr(settings, limit.rate_setting)
    value = limit.key(request) if rate else None
    if not value:
        return None
    try:
        return get_usage(
            request, group=limit.group, key=lambda group, request: value, rate=rate, method="POST", increment=True
        )
    except RedisError:  # django-redis re-raises the client's error
        # Without Redis nothing is counted; what the request goes on to do
        # fails closed on its own (checkout answers sale_paused), and nginx
        # still limits per IP.
        logger.warning("rate limit %s not checked: Redis unreachable", limit.group)
        return None


def limits_check(*, request: HttpRequest, limits: Sequence[Limit]) -> None:
    """Count this request against each limit in order. Raises RateLimited at
    the first one it is over (later ones are not spent)."""
    for limit in limits:
        usage = _usage(request, limit)
        if usage and usage["should_limit"]:
            metrics.rate_limit_refused(group=limit.group)
            raise RateLimited(retry_after=max(1, usage["time_left"]))


def rate_limited_page(request: HttpRequest, error: RateLimited) -> HttpResponse:
    response = render(request, "429.html", {"error": error, "retry_after": error.retry_after}, status=429)
    response["Retry-After"] = str(error.retry_after)
    return response


def rate_limit(*limits: Limit, page: bool = False):
    """Decorate a view with its limits. `page=True` answers with the storefront
    page, otherwise with the API's JSON. Only POSTs are counted: showing a
    form costs nothing worth limiting here (nginx limits page refreshes)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                limits_check(request=request, limits=limits)
            except RateLimited as error:
                return rate_limited_page(request, error) if page else shop_error_response(error)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
