"""Checkout: reserve stock for a buyer in one Redis round trip (the Lua
script decides), and answer with the order number and its access token.
No database read beyond the cached product, no database write, no row lock;
persistence makes the order later (persistence.py)."""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError

from apps.cardkeys.crypto import decrypt_secret, encrypt_secret
from apps.catalog.page_tokens import page_token_check
from apps.catalog.selectors import ProductInfo, product_info_for_checkout
from apps.core import metrics
from apps.coupons.exceptions import CouponInvalid, CouponLimitExceeded, CouponUsedUp
from apps.coupons.selectors import CouponInfo, coupon_for_checkout
from apps.coupons.services import coupon_buyer, coupon_use_return, coupon_use_take
from apps.stock import selectors as gate
from apps.stock import services as stock
from apps.stock.redis import gate_error_before_sending

from ..exceptions import (
    CaptchaRequired,
    IdempotencyKeyReused,
    InvalidInput,
    LimitExceeded,
    PageTokenInvalid,
    ProductNotFound,
    RateLimited,
    SaleEnded,
    SaleNotStarted,
    SalePaused,
    SoldOut,
    TooFast,
    UnpaidLimit,
)
from ..identity import (
    access_token_for,
    access_token_hash,
    buyer_identities,
    email_normalise,
    idempotency_digest,
    idempotency_fingerprint,
    order_number_new,
    strike_fields,
    unpaid_cap_identity,
)
from ..input_fields import input_values_clean, input_values_seal
from ..models import Order
from . import persistence

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuyerContext:
    """What the request tells about the buyer beyond the email."""

    account_id: int | None = None
    device_id: str = ""
    ip: str = ""
    page_token: str | None = None
    # A captcha this request solved (verified before checkout): clears the
    # client's strikes instead of being asked for one.
    captcha_solved: bool = False

    @property
    def strike_fields(self) -> tuple[str, str]:
        return strike_fields(ip=self.ip, device_id=self.device_id)


@dataclass(frozen=True)
class CheckoutResult:
    order_no: str
    access_token: str
    status: str
    product_id: int


@metrics.checkout_observed
def order_checkout(
    *,
    sku: str,
    email: str,
    quantity,
    idempotency_key: str | None = None,
    buyer: BuyerContext | None = None,
    language: str | None = None,
    coupon: str | None = None,
    fields: dict | None = None,
) -> CheckoutResult:
    """Reserve stock for a buyer. One Redis round trip decides; no database
    read beyond the cached product, no database write, no row lock.

    `quantity` must be an int. `language` is the buyer's (the request's
    active language when None); the order's mails are written in it.
    `coupon` is a code the buyer typed (any case): its use is taken in the
    gate before the stock, and given back when checkout refuses. Limits and
    the idempotency key count the normalised email (identity.email_normalise);
    the order keeps it as typed. `fields` holds the values of the product's
    checkout fields by key (checked here, sealed before Redis sees them).

    Raises InvalidInput, ProductNotFound, PageTokenInvalid, TooFast,
    RateLimited, SoldOut, LimitExceeded, UnpaidLimit (per buyer, or the client
    address's UNPAID_CAP_PER_IP), IdempotencyKeyReused, SaleNotStarted,
    SaleEnded, SalePaused, or a CouponError (coupon_invalid, coupon_expired,
    coupon_used_up, coupon_limit_exceeded, coupon_not_applicable)."""
    email, quantity, idempotency_key = _checkout_input_clean(email=email, quantity=quantity, key=idempotency_key)
    coupon_code = _coupon_input_clean(coupon)
    # Limits and the idempotency key's scope count the mailbox; the order
    # keeps (and mails) the address as typed.
    buyer_email = email_normalise(email)
    product = _product_for_checkout(sku)
    buyer = buyer or BuyerContext()
    try:
        page_token_check(product=product, token=buyer.page_token)
    except (PageTokenInvalid, TooFast):
        checkout_strike_record(product_id=product.id, buyer=buyer)
        raise
    # Checked before anything is taken (P7); sealed before Redis sees them (P5).
    sealed_input = input_values_seal(input_values_clean(fields=product.input_fields, values=fields))
    coupon_info = coupon_for_checkout(code=coupon_code, product_id=product.id) if coupon_code else None
    order_no = order_number_new(product_id=product.id)
    digest = idempotency_digest(email=buyer_email, key=idempotency_key) if idempotency_key else ""
    fingerprint = idempotency_fingerprint(sku=sku, quantity=quantity, email=email) if digest else ""
    buyers = buyer_identities(email=buyer_email, product=product, context=buyer)
    coupon_use = None
    if coupon_info is not None:
        try:
            coupon_use = coupon_use_take(
                coupon=coupon_info,
                order_no=order_no,
                buyer=coupon_buyer(buyers),
                product_id=product.id,
                idempotency_digest=digest,
            )
        except RedisError:
            logger.warning("checkout for %s paused: Redis unreachable", sku)
            raise SalePaused() from None
        except (CouponUsedUp, CouponLimitExceeded):
            # A retry of an order placed with this key gets that order, not
            # a refusal of the use its first try took.
            first = _idempotency_value_get(product_id=product.id, digest=digest)
            if first is None:
                raise
            return _first_order(first, fingerprint=fingerprint, product_id=product.id)
        # A double click: the first request of this idempotency key took the
        # use for its order number and may not have reserved yet. This one
        # reserves that same number; checkout.lua answers whichever comes
        # second with the first's order (duplicate).
        order_no = coupon_use.order_no
    token = access_token_for(order_no=order_no)
    try:
        outcome = stock.stock_reserve(
            product_id=product.id,
            order_no=order_no,
            buyers=buyers,
            quantity=quantity,
            token_hash=access_token_hash(token),
            email=email,
            idempotency_digest=digest,
            # Encrypted: Redis never holds a token that opens an order's keys.
            idempotency_value=_idempotency_value(order_no, token, fingerprint) if digest else "",
            strike_fields=buyer.strike_fields,
            captcha_solved=buyer.captcha_solved,
            unpaid_cap_identity=unpaid_cap_identity(ip=buyer.ip),
            language=order_language(language),
            coupon=_coupon_terms(coupon_info),
            input_values=sealed_input,
        )
    except RedisError as exc:
        # Given back only when the call provably never reached the gate (its
        # connection was refused or never made: on a Redis Cluster the
        # product's master may be dead while the coupon's answers, and a crowd
        # retrying would burn a capped coupon). After a read timeout it is
        # kept: checkout.lua may have stored the reservation, and a retry with
        # the idempotency key then gets this order (one use too many if its
        # use were free again); reconciliation gives it back once no
        # reservation or order holds it (coupon_claims_reconcile,
        # COUPON_CLAIM_GRACE_SECONDS).
        if coupon_use is not None and coupon_use.taken_now and gate_error_before_sending(exc):
            _coupon_give_back(coupon_info, order_no)
        logger.warning("checkout for %s paused: Redis unreachable", sku)
        raise SalePaused() from None
    if outcome.code == "ok":
        if outcome.persist_requested:
            persistence.order_persist_request_rollback_unsafe(product_id=product.id)
        return CheckoutResult(order_no=order_no, access_token=token, status=Order.Status.QUEUED, product_id=product.id)
    # Refused, or answered with the first order: the use this call took goes
    # back, unless the first order is this very number (another request of
    # the same key reserved it: the use is that order's). A use another
    # request took stays with it.
    if coupon_use is not None and coupon_use.taken_now:
        # A refusal that comes before checkout.lua's idempotency check (the
        # rate limit) can follow the other request's reservation of it.
        first = (
            outcome.idempotency_value
            if outcome.code == "duplicate"
            else _idempotency_value_get(product_id=product.id, digest=digest)
        )
        if first is None or _idempotency_value_read(first)[0] != order_no:
            _coupon_give_back(coupon_info, order_no)
    if outcome.code == "duplicate":
        return _first_order(outcome.idempotency_value, fingerprint=fingerprint, product_id=product.id)
    raise _checkout_refusal(outcome)


def _first_order(value: str, *, fingerprint: str, product_id: int) -> CheckoutResult:
    """The order an idempotency key was first spent on, as this request's answer."""
    first_order_no, sealed_token, first_fingerprint = _idempotency_value_read(value)
    if first_fingerprint is not None and first_fingerprint != fingerprint:
        # Stripe's answer: the key was spent on another order; the first
        # order is not handed back as if it were this one.
        raise IdempotencyKeyReused()
    first_token = decrypt_secret(sealed_token)
    return CheckoutResult(
        order_no=first_order_no, access_token=first_token, status=Order.Status.QUEUED, product_id=product_id
    )


def _idempotency_value_get(*, product_id: int, digest: str) -> str | None:
    if not digest:
        return None
    try:
        return gate.stock_idempotency_value(product_id=product_id, digest=digest)
    except RedisError:
        return None


def _coupon_input_clean(coupon) -> str | None:
    if coupon is None or (isinstance(coupon, str) and not coupon.strip()):
        return None
    if not isinstance(coupon, str) or len(coupon.strip()) > 32:
        raise CouponInvalid()
    return coupon.strip()


def _coupon_terms(coupon: CouponInfo | None) -> tuple[int, str, str, str] | None:
    """What the reservation carries of the coupon: its terms now, so the
    order's price never follows a later edit."""
    if coupon is None:
        return None
    return (coupon.id, coupon.code, coupon.kind, str(coupon.value))


def _coupon_give_back(coupon: CouponInfo | None, order_no: str) -> None:
    """The use this order number took, returned at once. If Redis fails
    here, the use stays taken until reconciliation finds no order holds it
    (apps.coupons.services.coupon_claims_reconcile): one use too few for a
    while, never one too many."""
    if coupon is None:
        return
    try:
        coupon_use_return(coupon_id=coupon.id, order_no=order_no)
    except RedisError:
        logger.warning("coupon %s: use of refused order %s not given back; reconcile will", coupon.code, order_no)


def order_language(language: str | None) -> str:
    """One of settings.LANGUAGES: the one asked for, else the active one
    (LocaleMiddleware set it from the request), else the shop's default."""
    for candidate in (language, translation.get_language()):
        if isinstance(candidate, str) and candidate:
            try:
                return translation.get_supported_language_variant(candidate)
            except LookupError:
                continue
    return settings.LANGUAGE_CODE


def _idempotency_value(order_no: str, token: str, fingerprint: str) -> str:
    """What an idempotency key's record holds: the first order, its sealed
    token and what it asked for (space-separated; none of them has a space)."""
    return f"{order_no} {encrypt_secret(token)} {fingerprint}"


def _idempotency_value_read(value: str) -> tuple[str, str, str | None]:
    # A record written before fingerprints (a deploy within its TTL) has none:
    # it answers as it did then.
    order_no, sealed_token, *rest = value.split(" ")
    return order_no, sealed_token, (rest[0] if rest else None)


def checkout_strike_record(*, product_id: int, buyer: BuyerContext) -> None:
    """Count a suspicious attempt (bad page token, too fast, honeypot, wrong
    captcha) towards the captcha threshold. Best effort: without Redis,
    checkout is paused anyway."""
    try:
        stock.stock_strike_add(product_id=product_id, strike_fields=buyer.strike_fields)
    except RedisError:
        logger.warning("suspicious attempt not counted: Redis unreachable")


def _checkout_input_clean(*, email, quantity, key) -> tuple[str, int, str | None]:
    """The email as typed (trimmed), the quantity, the idempotency key.
    Raises InvalidInput naming each refused field."""
    fields: dict[str, list[str]] = {}
    email = email.strip() if isinstance(email, str) else ""
    try:
        # The order row holds at most 254 characters; longer must not reach the queue.
        if len(email) > Order._meta.get_field("buyer_email").max_length:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        fields["email"] = [str(_("Enter a valid email address."))]
    # An integer, not text or a float that looks like one: "1" and 1.0 are
    # refused (the storefront form converts its text field before calling).
    if type(quantity) is not int or quantity < 1:
        fields["quantity"] = [str(_("Quantity must be a whole number of at least 1."))]
    if key is not None and (not isinstance(key, str) or len(key) > 64):
        fields["idempotency_key"] = [str(_("The idempotency key must be text of at most 64 characters."))]
    if fields:
        raise InvalidInput(fields=fields)
    return email, quantity, (key or None)


def _product_for_checkout(sku: str) -> ProductInfo:
    if not isinstance(sku, str) or not sku or len(sku) > 64:
        raise InvalidInput(fields={"sku": [str(_("Unknown product."))]})
    # Without Redis this still answers (from the database or this process's
    # copy); the checkout script then fails, and checkout answers sale_paused.
    product = product_info_for_checkout(sku=sku)
    if product is None or not product.is_active:
        raise ProductNotFound()
    return product


# The same code as the buyer's own cap; the text says whose orders count.
UNPAID_BY_ADDRESS = _(
    "Too many unpaid orders for this product come from your network. Pay one of them or let it expire first."
)


def _checkout_refusal(outcome: stock.ReserveOutcome) -> Exception:
    if outcome.code == "sold_out":
        return SoldOut()
    if outcome.code == "limit_exceeded":
        return LimitExceeded(limit=outcome.limit, already=outcome.held)
    if outcome.code == "captcha_required":
        return CaptchaRequired(captcha_url=reverse("api:captcha"))
    if outcome.code == "unpaid_limit":
        if outcome.by_address:
            return UnpaidLimit(UNPAID_BY_ADDRESS, max_unpaid=outcome.max_unpaid)
        return UnpaidLimit(max_unpaid=outcome.max_unpaid)
    if outcome.code == "rate_limited":
        return RateLimited(retry_after=max(1, -(-outcome.retry_after_ms // 1000)))
    if outcome.code == "queue_full":
        return SalePaused(_("Too many orders are waiting to be placed. Please try again in a few seconds."))
    if outcome.code == "too_many":
        message = _("At most %(n)d per order.") % {"n": outcome.max_per_order}
        return InvalidInput(fields={"quantity": [str(message)]})
    if outcome.code == "sale_not_started":
        return SaleNotStarted()
    if outcome.code == "sale_ended":
        return SaleEnded()
    if outcome.code == "not_found":
        return ProductNotFound()
    return SalePaused()
