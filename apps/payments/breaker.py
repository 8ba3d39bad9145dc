"""Every call to a payment provider goes through that provider's circuit
breaker (apps.core.breakers, named "payment:<provider>"), so a provider that
times out is not waited on by every buyer: after a few failures calls fail
fast and the buyer is told to come back, with the order kept."""

import logging
from collections.abc import Callable

from apps.core.breakers import BreakerOpen, breaker_call, breaker_refusing
from apps.core.errors import ShopError

from .exceptions import PaymentUnavailable

logger = logging.getLogger(__name__)


def provider_breaker_name(provider_name: str) -> str:
    return f"payment:{provider_name}"


def provider_call(provider, method: str, /, **kwargs):
    """`provider.<method>(**kwargs)` through the provider's breaker. Any failure
    other than a refusal with a reason (a ShopError, raised as it is) becomes
    PaymentUnavailable, so the buyer hears "try again shortly" rather than
    seeing an error page; nothing about the order changes."""
    try:
        return breaker_call(provider_breaker_name(provider.name), getattr(provider, method), **kwargs)
    except ShopError:
        raise
    except BreakerOpen as exc:
        raise PaymentUnavailable(retry_after=exc.retry_after) from exc
    except Exception as exc:
        logger.warning("payment provider %s: %s failed: %r", provider.name, method, exc)
        raise PaymentUnavailable() from exc


def provider_refusing(method: str) -> bool:
    """Is the provider of this payment method's breaker refusing calls now?"""
    return breaker_refusing(provider_breaker_name(method.partition(".")[0]))


def provider_post_guarded(provider_name: str, post: Callable[..., int]) -> Callable[..., int]:
    """`post` (an HTTP call of the provider's) through the provider's breaker:
    timeouts and refused connections count as failures, an HTTP answer of any
    status does not (it came from the other side, which is up)."""

    def guarded(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        return breaker_call(provider_breaker_name(provider_name), post, url, body, headers, timeout)

    return guarded
