"""Domain errors. Each carries a stable code that the API returns verbatim and
the templates translate; the HTTP status it maps to lives here too."""

from django.http import JsonResponse
from django.utils.translation import gettext_lazy as _


class ShopError(Exception):
    code = "error"
    http_status = 400
    default_detail = _("The request could not be completed.")

    # Seconds a client should wait before retrying (sent as Retry-After), if any.
    retry_after: int | None = None

    def __init__(self, detail=None, *, retry_after: int | None = None, **extra):
        self.detail = detail if detail is not None else self.default_detail
        self.extra = extra
        if retry_after is not None:
            self.retry_after = retry_after
        super().__init__(str(self.detail))

    def as_json(self) -> dict:
        return {"error": self.code, "detail": str(self.detail), **self.extra}


class InvalidInput(ShopError):
    """Bad input; `fields` maps each field to its messages."""

    code = "invalid"
    http_status = 400
    default_detail = _("Some fields are not valid.")


class UnsupportedMediaType(ShopError):
    """A body the view reads as JSON came as something else. Checkout insists:
    a cross-site form can send text/plain or a form without asking the
    browser first, but not application/json."""

    code = "unsupported_media_type"
    http_status = 415
    default_detail = _("Send the body as JSON, with the header Content-Type: application/json.")


class RequestTooLarge(ShopError):
    """The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE."""

    code = "request_too_large"
    http_status = 413
    default_detail = _("The request body is too large.")


class RateLimited(ShopError):
    """Over a rate limit: a per-client one (django-ratelimit) or the checkout's
    per-product cap (the token bucket in the checkout script)."""

    code = "rate_limited"
    http_status = 429
    default_detail = _("Too many requests. Please wait a moment and try again.")
    retry_after = 1


def shop_error_response(error: ShopError) -> JsonResponse:
    """The API's answer to a ShopError: its JSON, its status, and Retry-After
    when it has one."""
    response = JsonResponse(error.as_json(), status=error.http_status)
    if error.retry_after:
        response["Retry-After"] = str(error.retry_after)
    return response


class AuthenticatorAlreadyEnrolled(ShopError):
    """The staff member has an authenticator already; its secret was shown once,
    when it was made, and is never shown again (replacing it makes a new one)."""

    code = "authenticator_enrolled"
    http_status = 409
    default_detail = _("This account has an authenticator already.")
