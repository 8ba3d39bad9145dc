from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError

from .models import Coupon
from .selectors import coupon_uses_taken


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    """The merchant's coupons. Uses are counted in the gate (live), not here."""

    list_display = (
        "code",
        "kind",
        "value",
        "is_active",
        "valid_from",
        "valid_until",
        "max_uses",
        "max_uses_per_buyer",
        "uses_taken",
    )
    list_filter = ("is_active", "kind")
    search_fields = ("code",)
    filter_horizontal = ("products",)
    readonly_fields = ("uses_taken", "created_at", "updated_at")
    fieldsets = (
        (
            None,
            {
                "fields": ("code", "is_active", "kind", "value"),
                "description": _(
                    "Turn a coupon off (untick “active”) to end it; coupons are not deleted, "
                    "so orders placed with one keep it."
                ),
            },
        ),
        (_("Where and when"), {"fields": ("products", "valid_from", "valid_until")}),
        (_("Uses"), {"fields": ("max_uses", "max_uses_per_buyer", "uses_taken")}),
        (None, {"fields": ("created_at", "updated_at")}),
    )

    def has_delete_permission(self, request, obj=None):
        # Orders (and reservations still queued for MariaDB) name the coupon;
        # turning it off ends it without touching them.
        return False

    @admin.display(description=_("uses taken"))
    def uses_taken(self, coupon):
        if coupon.pk is None:
            return "—"
        try:
            taken = coupon_uses_taken(coupon_id=coupon.pk)
        except RedisError:
            taken = None
        # Unknown until the next checkout with it counts them from the orders.
        return "—" if taken is None else taken
