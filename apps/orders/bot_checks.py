"""Bot checks on checkout (issue 4, fairness rules): a honeypot field, and a
captcha once a client has tripped a soft threshold of suspicious attempts.

Suspicious: the honeypot filled, the page token missing or forged
(`page_token_invalid`), a checkout quicker than the product's minimum time on
the page (`too_fast`), and a captcha missing or answered wrongly once one is
asked for. Each strike is counted twice, under the client's IP and under its
device cookie, for BOT_WINDOW_SECONDS from the first strike. From
BOT_SOFT_THRESHOLD strikes on either counter, checkout wants a captcha; a
correct answer clears both counters. The threshold is soft on purpose: one
address may be an office or a carrier's NAT, so crossing it costs a captcha,
never a refusal outright. Sold out, limits and rate limits are not strikes:
they say nothing about being a person.

Counting is per product, in the product's Redis keys ({p:<id>}:strikes), so
the check costs nothing extra: the checkout script reads the counters in the
same single round trip as its decision and answers captcha_required itself.
A solved captcha (verified here, against its database row, only when one is
sent) is passed to the script, which then clears the counters. Without Redis
nothing is counted and no captcha is asked: checkout fails closed on its own
then (sale_paused).

Storefront: while the client is over the threshold the product page renders
the captcha in the purchase form, and the form is refused with "please solve
the captcha" until it is solved. The honeypot is refused like any invalid form.

JSON API: there is no honeypot (no form). Over the threshold
`POST /api/v1/orders` answers 403 `{"error": "captcha_required", "detail",
"captcha_url": "/api/v1/captcha"}`, or `captcha_invalid` for a wrong or expired
answer. `GET /api/v1/captcha` (api.py) answers `{"captcha_key", "image_url"}`; the client
shows the image to its person and sends `captcha_key` and `captcha_value` in
the JSON body of its next order. A captcha is good for one try within
CAPTCHA_TIMEOUT minutes.
"""

import logging

from captcha.fields import CaptchaField
from django.core.exceptions import ValidationError
from django.urls import reverse
from redis.exceptions import RedisError

from apps.catalog.selectors import product_info_for_checkout
from apps.core.errors import InvalidInput
from apps.stock.selectors import stock_captcha_needed

from .exceptions import CaptchaInvalid
from .services.checkout import BuyerContext, checkout_strike_record

logger = logging.getLogger(__name__)


def honeypot_check(*, sku: str, buyer: BuyerContext, honeypot: str) -> None:
    """Refuse a form whose hidden field was filled (InvalidInput, no hint why)."""
    if honeypot:
        product = product_info_for_checkout(sku=sku)
        if product is not None:
            checkout_strike_record(product_id=product.id, buyer=buyer)
        raise InvalidInput(fields={})


def captcha_verify(*, sku: str, buyer: BuyerContext, key, answer) -> bool:
    """True when the request carries a correct captcha answer (it is spent
    either way); False when it carries none. A wrong or expired answer is a
    strike and raises CaptchaInvalid."""
    if not (isinstance(key, str) and key and isinstance(answer, str) and answer.strip()):
        return False
    try:
        CaptchaField().clean([key, answer])
    except ValidationError:
        product = product_info_for_checkout(sku=sku)
        if product is not None:
            checkout_strike_record(product_id=product.id, buyer=buyer)
        raise CaptchaInvalid(captcha_url=reverse("api:captcha")) from None
    return True


def captcha_needed(*, product_id: int, buyer: BuyerContext) -> bool:
    """For the product page: show the captcha to a client over the threshold."""
    try:
        return stock_captcha_needed(product_id=product_id, strike_fields=buyer.strike_fields)
    except RedisError:
        return False
