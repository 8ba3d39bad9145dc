"""The signed page token: proof that a checkout came from a client that fetched
the product (page or API) at least the product's minimum seconds earlier. A
bot posting straight away, or without the page, is refused."""

import math
import time

from django.conf import settings
from django.core import signing

from apps.orders.exceptions import PageTokenInvalid, TooFast

SALT = "cardshop.page-token"


def page_token_new(*, sku: str) -> str:
    return signing.dumps({"sku": sku, "at": time.time()}, salt=SALT)


def page_token_check(*, product, token: str | None) -> None:
    """Raises PageTokenInvalid (missing, forged, stale, other product) or
    TooFast (younger than the product's minimum). A minimum of 0 turns it off."""
    if product.min_page_seconds <= 0:
        return
    try:
        payload = signing.loads(token or "", salt=SALT, max_age=settings.PAGE_TOKEN_MAX_AGE)
    except signing.BadSignature:  # also SignatureExpired: a stale page
        raise PageTokenInvalid() from None
    if not isinstance(payload, dict) or payload.get("sku") != product.sku:
        raise PageTokenInvalid()
    age = time.time() - float(payload.get("at", 0))
    if age < product.min_page_seconds:
        raise TooFast(retry_after=max(1, math.ceil(product.min_page_seconds - age)))


def page_token_good(*, sku: str, token: str | None) -> bool:
    """Is this a token of ours for this product, not yet stale? (Its age may
    still be under the minimum: a page that keeps it keeps counting.)"""
    try:
        payload = signing.loads(token or "", salt=SALT, max_age=settings.PAGE_TOKEN_MAX_AGE)
    except signing.BadSignature:
        return False
    return isinstance(payload, dict) and payload.get("sku") == sku
