"""Coupon reads. A coupon's terms are served from the cache (checkout reads
them on the hot path, like the product); an edit drops the cached copy
(signals.py). Its uses are counted in the gate Redis (services.py)."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from redis.exceptions import RedisError

from apps.catalog.selectors import ProductInfo
from apps.orders.identity import buyer_identity, email_normalise
from apps.orders.pricing import OrderPrice, order_price, tier_unit_price
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import coupon_buyers_key, coupon_uses_key

from .exceptions import CouponExpired, CouponInvalid, CouponLimitExceeded, CouponNotApplicable, CouponUsedUp
from .models import Coupon, coupon_code_normalise

_MISSING = "missing"


@dataclass(frozen=True)
class CouponInfo:
    """A coupon's terms, cacheable as is."""

    id: int
    code: str
    kind: str
    value: Decimal
    # None: every product.
    product_ids: frozenset[int] | None
    valid_from: datetime | None
    valid_until: datetime | None
    max_uses: int | None
    max_uses_per_buyer: int | None
    is_active: bool

    @classmethod
    def from_coupon(cls, coupon: Coupon) -> "CouponInfo":
        product_ids = frozenset(coupon.products.values_list("id", flat=True))
        return cls(
            id=coupon.id,
            code=coupon.code,
            kind=coupon.kind,
            value=coupon.value,
            product_ids=product_ids or None,
            valid_from=coupon.valid_from,
            valid_until=coupon.valid_until,
            max_uses=coupon.max_uses,
            max_uses_per_buyer=coupon.max_uses_per_buyer,
            is_active=coupon.is_active,
        )


def coupon_cache_key(code: str) -> str:
    return f"coupons:code:{code}"


def coupon_info_get(*, code: str) -> CouponInfo | None:
    """The coupon with this code (any case), from cache; None if unknown."""
    code = coupon_code_normalise(code)
    key = coupon_cache_key(code)
    try:
        info = cache.get(key)
    except RedisError:
        info = None
    if info is None:
        coupon = Coupon.objects.filter(code=code).first()
        info = CouponInfo.from_coupon(coupon) if coupon else _MISSING
        try:
            cache.set(key, info, settings.PRODUCT_CACHE_TTL)
        except RedisError:
            pass
    return None if info == _MISSING else info


def coupon_for_checkout(*, code, product_id: int, now: datetime | None = None) -> CouponInfo:
    """The coupon a buyer typed, if it may be used on this product now (its
    uses are counted apart, when it is taken). Raises CouponInvalid,
    CouponExpired or CouponNotApplicable."""
    if not isinstance(code, str) or not code.strip() or len(code.strip()) > 32:
        raise CouponInvalid()
    coupon = coupon_info_get(code=code)
    if coupon is None or not coupon.is_active:
        raise CouponInvalid()
    now = now or timezone.now()
    if coupon.valid_from and now < coupon.valid_from:
        raise CouponInvalid(CouponInvalid.not_yet_detail)
    if coupon.valid_until and now >= coupon.valid_until:
        raise CouponExpired()
    if coupon.product_ids is not None and product_id not in coupon.product_ids:
        raise CouponNotApplicable()
    return coupon


def coupon_uses_taken(*, coupon_id: int) -> int | None:
    """Uses held now (None while not counted since Redis lost them)."""
    value = stock_redis().get(coupon_uses_key(coupon_id))
    return None if value is None else int(value)


@dataclass(frozen=True)
class PricePreview:
    """What an order would cost now, before checkout (the product page's total)."""

    unit_price: Decimal
    price: OrderPrice
    coupon: CouponInfo | None


def price_preview(*, product: ProductInfo, quantity: int, code: str | None, email: str | None = None) -> PricePreview:
    """The price checkout would fix for this order now: the tier price from
    the product's cached rules and the coupon's discount, if the coupon may be
    used (uses left, and this buyer's, when the email is given). Checkout
    decides again in the gate. Raises the CouponError checkout would."""
    unit = tier_unit_price(price=product.price, tiers=product.price_tiers, quantity=quantity)
    coupon = coupon_for_checkout(code=code, product_id=product.id) if code else None
    if coupon is not None:
        _uses_left_check(coupon, email)
    price = order_price(
        unit_price=unit,
        quantity=quantity,
        coupon_kind=coupon.kind if coupon else "",
        coupon_value=coupon.value if coupon else "",
    )
    return PricePreview(unit_price=unit, price=price, coupon=coupon)


def _uses_left_check(coupon: CouponInfo, email: str | None) -> None:
    try:
        client = stock_redis()
        taken = client.get(coupon_uses_key(coupon.id))
        if coupon.max_uses is not None and taken is not None and int(taken) >= coupon.max_uses:
            raise CouponUsedUp()
        if coupon.max_uses_per_buyer is not None and email:
            buyer = "e:" + buyer_identity(email=email_normalise(email))
            held = client.hget(coupon_buyers_key(coupon.id), buyer)
            if held is not None and int(held) >= coupon.max_uses_per_buyer:
                raise CouponLimitExceeded()
    except RedisError:
        pass  # a preview; checkout counts for real
