"""Reads for the admin's door and the shop settings (the services beside it write)."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice
from redis.exceptions import RedisError

from .last_good import LastGood
from .models import ShopSettings


def staff_totp_device(*, user: AbstractBaseUser) -> TOTPDevice | None:
    """The staff member's authenticator. enrol_admin keeps one per account, so
    the login form needs no device picker."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()


# --- The shop settings (models.ShopSettings): read on every storefront page.

SHOP_SETTINGS_CACHE_KEY = "core:shop-settings:v1"
# Each process keeps its copy this long before asking the cache again, so a
# page costs no extra Redis round trip; a merchant's save shows in this process
# at once and in the others within these seconds.
SHOP_SETTINGS_MEMO_SECONDS = 5
_shop_memo = LastGood(max_entries=1)


@dataclass(frozen=True)
class ShopInfo:
    """The shop settings as the storefront shows them, cacheable as is; it
    carries both languages, and the properties answer in the active one."""

    name_zh_hans: str = ""
    name_en: str = ""
    logo_url: str | None = None
    banner_zh_hans: str = ""
    banner_en: str = ""
    banner_starts_at: datetime | None = None
    banner_ends_at: datetime | None = None
    footer_zh_hans: str = ""
    footer_en: str = ""
    contact_zh_hans: str = ""
    contact_en: str = ""

    @property
    def name(self) -> str:
        return _in_active_language(self.name_zh_hans, self.name_en) or str(_("Card Key Shop"))

    @property
    def footer(self) -> str:
        return _in_active_language(self.footer_zh_hans, self.footer_en)

    @property
    def contact(self) -> str:
        return _in_active_language(self.contact_zh_hans, self.contact_en)

    def banner_at(self, now: datetime) -> str:
        """The banner text if its window is open at `now`, else ""."""
        if self.banner_starts_at and now < self.banner_starts_at:
            return ""
        if self.banner_ends_at and now >= self.banner_ends_at:
            return ""
        return _in_active_language(self.banner_zh_hans, self.banner_en)

    @property
    def banner(self) -> str:
        return self.banner_at(timezone.now())

    @classmethod
    def from_settings(cls, row: ShopSettings) -> "ShopInfo":
        return cls(
            name_zh_hans=row.name_zh_hans or "",
            name_en=row.name_en or "",
            logo_url=row.logo_small.url if row.logo_small else None,
            banner_zh_hans=row.banner_zh_hans or "",
            banner_en=row.banner_en or "",
            banner_starts_at=row.banner_starts_at,
            banner_ends_at=row.banner_ends_at,
            footer_zh_hans=row.footer_zh_hans or "",
            footer_en=row.footer_en or "",
            contact_zh_hans=row.contact_zh_hans or "",
            contact_en=row.contact_en or "",
        )


def _in_active_language(zh_hans: str, en: str) -> str:
    # The same fallback as the catalog's (apps.catalog.selectors.in_active_language);
    # core does not import the catalog.
    if (get_language() or "").startswith("en"):
        return en or zh_hans
    return zh_hans or en


def shop_settings_get() -> ShopInfo:
    """The shop settings (defaults while the merchant has saved none), from
    this process's copy, the cache, or the database, in that order. Without
    Redis the last copy this process had is served."""
    info = _shop_memo.recall(SHOP_SETTINGS_CACHE_KEY, max_age=SHOP_SETTINGS_MEMO_SECONDS)
    if info is not None:
        return info
    try:
        info = cache.get(SHOP_SETTINGS_CACHE_KEY)
    except RedisError:
        info = _shop_memo.recall(SHOP_SETTINGS_CACHE_KEY, max_age=settings.CATALOG_FALLBACK_SECONDS)
        if info is not None:
            return info
    if info is None:
        row = ShopSettings.objects.filter(pk=ShopSettings.SINGLETON_PK).first()
        info = ShopInfo.from_settings(row) if row else ShopInfo()
        try:
            cache.set(SHOP_SETTINGS_CACHE_KEY, info, settings.PRODUCT_CACHE_TTL)
        except RedisError:
            pass
    _shop_memo.remember(SHOP_SETTINGS_CACHE_KEY, info)
    return info


def shop_settings_memo_forget() -> None:
    """Drop this process's copy only."""
    _shop_memo.forget(SHOP_SETTINGS_CACHE_KEY)


def shop_settings_forget() -> None:
    """Drop the cached copies (this process's now; the others' within
    SHOP_SETTINGS_MEMO_SECONDS). Called on save and again after commit."""
    shop_settings_memo_forget()
    try:
        cache.delete(SHOP_SETTINGS_CACHE_KEY)
    except RedisError:
        pass
