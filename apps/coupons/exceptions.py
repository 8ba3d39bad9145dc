"""Why a coupon was refused: stable codes the API returns and the storefront translates."""

from django.utils.translation import gettext_lazy as _

from apps.core.errors import ShopError


class CouponError(ShopError):
    """A coupon refused; nothing was reserved."""


class CouponInvalid(CouponError):
    """No active coupon has this code (or it is not valid yet)."""

    code = "coupon_invalid"
    http_status = 400
    default_detail = _("This coupon code is not valid.")
    not_yet_detail = _("This coupon is not valid yet.")


class CouponExpired(CouponError):
    code = "coupon_expired"
    http_status = 409
    default_detail = _("This coupon has expired.")


class CouponUsedUp(CouponError):
    code = "coupon_used_up"
    http_status = 409
    default_detail = _("This coupon has been used up.")


class CouponLimitExceeded(CouponError):
    """The buyer (by normalised email) used it as often as it allows."""

    code = "coupon_limit_exceeded"
    http_status = 409
    default_detail = _("You have already used this coupon as often as it allows.")


class CouponNotApplicable(CouponError):
    code = "coupon_not_applicable"
    http_status = 409
    default_detail = _("This coupon does not apply to this product.")
