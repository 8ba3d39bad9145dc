"""Bot checks on checkout (issue 4, fairness rules): a honeypot field, and a
captcha once a client has tripped a soft threshold of suspicious attempts.

Suspicious: the honeypot filled, the page token missing or forged
(`page_token_invalid`), a checkout quicker than the product's minimum time on
the page (`too_fast`), and a captcha missing or answered wrongly once one is
asked for. Each strike is counted twice, under the client's IP and under its
device cookie, in the Redis cache for BOT_WINDOW_SECONDS from the first strike.
From BOT_SOFT_THRESHOLD strikes on either counter, checkout wants a captcha; a
correct answer clears both counters. The threshold is soft on purpose: one
address may be an office or a carrier's NAT, so crossing it costs a captcha,
never a refusal outright. Sold out, limits and rate limits are not strikes:
they say nothing about being a person.

Cost: a client under the threshold pays one Redis round trip (an MGET of its
counters) on top of the checkout script; the captcha's database rows are only
written and read for clients over it. Without Redis nothing is counted and no
captcha is asked: checkout fails closed on its own then (sale_paused).

Storefront: while the client is over the threshold the product page renders
the captcha in the purchase form, and the form is refused with "please solve
the captcha" until it is solved. The honeypot is refused like any invalid form.

JSON API: there is no honeypot (no form). Over the threshold
`POST /api/v1/orders` answers 403 `{"error": "captcha_required", "detail",
"captcha_url": "/api/v1/captcha"}`, or `captcha_invalid` for a wrong or expired
answer. `GET /api/v1/captcha` answers `{"captcha_key", "image_url"}`; the client
shows the image to its person and sends `captcha_key` and `captcha_value` in
the JSON body of its next order. A captcha is good for one try within
CAPTCHA_TIMEOUT minutes.
"""
import logging
from contextlib import contextmanager

from captcha.fields import CaptchaField
from captcha.helpers import captcha_image_url
from captcha.models import CaptchaStore
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from apps.core.client_ip import client_ip
from apps.core.errors import InvalidInput, ShopError

from .buyer_context import device_id
from .exceptions import PageTokenInvalid, TooFast

logger = logging.getLogger(__name__)


class CaptchaRequired(ShopError):
    code = "captcha_required"
    http_status = 403
    default_detail = _("Please solve the captcha.")


class CaptchaInvalid(CaptchaRequired):
    code = "captcha_invalid"
    default_detail = _("The captcha answer was wrong or has expired. Please solve the new one.")


def _counter_keys(request: HttpRequest) -> list[str]:
    names = [f"bot:ip:{ip}"] if (ip := client_ip(request)) else []
    if device := device_id(request):
        names.append(f"bot:device:{device}")
    # Cache keys, so they carry the environment's prefix like every cache entry.
    return [cache.make_key(name) for name in names]


def _redis():
    return get_redis_connection("default")


def strikes_count(request: HttpRequest) -> int:
    """The higher of the client's two counters (one round trip)."""
    keys = _counter_keys(request)
    if not keys:
        return 0
    try:
        values = _redis().mget(keys)
    except RedisError:
        logger.warning("bot counters not read: Redis unreachable")
        return 0
    return max((int(value) for value in values if value is not None), default=0)


def strike_add(request: HttpRequest) -> None:
    """Count one suspicious attempt. The window starts at the first strike
    (SET NX with its expiry; INCR keeps the expiry)."""
    keys = _counter_keys(request)
    try:
        pipe = _redis().pipeline(transaction=False)
        for key in keys:
            pipe.set(key, 0, ex=settings.BOT_WINDOW_SECONDS, nx=True)
            pipe.incr(key)
        pipe.execute()
    except RedisError:
        logger.warning("bot strike not counted: Redis unreachable")


def _strikes_clear(request: HttpRequest) -> None:
    keys = _counter_keys(request)
    try:
        if keys:
            _redis().delete(*keys)
    except RedisError:
        logger.warning("bot counters not cleared: Redis unreachable")


def captcha_needed(request: HttpRequest) -> bool:
    threshold = settings.BOT_SOFT_THRESHOLD
    return threshold > 0 and strikes_count(request) >= threshold


def _captcha_solve(request: HttpRequest, *, key, answer) -> None:
    """Raises CaptchaRequired or CaptchaInvalid (each a strike); a correct
    answer clears the client's strikes. A captcha is spent by any try."""
    captcha_url = reverse("api:captcha")
    if not (isinstance(key, str) and key and isinstance(answer, str) and answer.strip()):
        strike_add(request)
        raise CaptchaRequired(captcha_url=captcha_url)
    try:
        CaptchaField().clean([key, answer])
    except ValidationError:
        strike_add(request)
        raise CaptchaInvalid(captcha_url=captcha_url) from None
    _strikes_clear(request)


@contextmanager
def checkout_guard(request: HttpRequest, *, honeypot: str = "", captcha_key=None, captcha_answer=None):
    """Wrap a checkout call. Before it: refuse a filled honeypot (InvalidInput,
    no hint why) and, over the threshold, a missing or wrong captcha. After
    it: count a refusal for the page token (PageTokenInvalid, TooFast)."""
    if honeypot:
        strike_add(request)
        raise InvalidInput(fields={})
    if captcha_needed(request):
        _captcha_solve(request, key=captcha_key, answer=captcha_answer)
    try:
        yield
    except (PageTokenInvalid, TooFast):
        strike_add(request)
        raise


@require_GET
def captcha_new(request: HttpRequest) -> JsonResponse:
    """GET /api/v1/captcha: a fresh captcha for an API client to solve."""
    key = CaptchaStore.pick()
    return JsonResponse({"captcha_key": key, "image_url": captcha_image_url(key)})
