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

from apps.stock.redis import stock_redis
from apps.stock.redis_keys import coupon_uses_key

from .exceptions import CouponExpired, CouponInvalid, CouponNotApplicable
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
