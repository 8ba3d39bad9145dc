"""What a checkout request tells about its buyer beyond the email: account,
device cookie, client IP and the product page's token."""

import secrets

from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse

from apps.core.client_ip import client_ip

from .services.checkout import BuyerContext

DEVICE_COOKIE = "cs_device"
_DEVICE_SALT = "cardshop.device"
_DEVICE_MAX_AGE = 365 * 24 * 3600


def device_id(request: HttpRequest) -> str:
    return request.get_signed_cookie(DEVICE_COOKIE, default="", salt=_DEVICE_SALT)


def device_cookie_ensure(request: HttpRequest, response: HttpResponse) -> None:
    """Give a browser or client its signed device id once (product page, product API)."""
    if not device_id(request):
        response.set_signed_cookie(
            DEVICE_COOKIE,
            secrets.token_urlsafe(16),
            salt=_DEVICE_SALT,
            max_age=_DEVICE_MAX_AGE,
            httponly=True,
            samesite="Lax",
        )


def buyer_context(request: HttpRequest, *, page_token: str | None) -> BuyerContext:
    return BuyerContext(
        account_id=_account_id(request),
        device_id=device_id(request),
        ip=client_ip(request),
        page_token=page_token,
    )


def _account_id(request: HttpRequest) -> int | None:
    """The logged-in account's id, from the session alone: loading the user
    (request.user) would query the user table on every checkout, and the
    per-account limit needs only the id."""
    session = getattr(request, "session", None)
    raw = session.get(SESSION_KEY) if session is not None else None
    return int(raw) if isinstance(raw, (int, str)) and str(raw).isdigit() else None
