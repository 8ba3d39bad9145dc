"""Catalog reads. Product info and the storefront listing are served from the
cache so a refresh storm never reaches MariaDB; a merchant's edit drops the
cached copies (signals.py). Database reads here go to the replica (router);
what a miss reads just after an edit is not cached while a replica may lag
(_cache_fill)."""

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone, translation
from django.utils.translation import get_language
from redis.exceptions import RedisError

from apps.core.last_good import LastGood
from cardshop.db_router import ROUTE_PRIMARY, ROUTE_REPLICA, primary_reads, stale_read_route

from .models import Category, Product, ProductInputField

logger = logging.getLogger(__name__)

# v2: product info carries every language's texts and the image URLs; the
# version keeps a process from reading a copy cached in the old shape.
LISTING_CACHE_KEY = "catalog:listing:v2"
# Cached for an unknown SKU, so requests for a missing product do not reach
# the database either; creating that SKU drops it like any other edit.
_MISSING = "missing"


def in_active_language(zh_hans: str | None, en: str | None) -> str:
    """The text in the buyer's language, or in the other one when the merchant
    left that empty (as django-modeltranslation falls back on the models)."""
    zh_hans, en = zh_hans or "", en or ""
    if (get_language() or "").startswith("en"):
        return en or zh_hans
    return zh_hans or en


@dataclass(frozen=True)
class InputFieldInfo:
    """A field the buyer fills in at checkout (ProductInputField), cacheable."""

    key: str
    label_zh: str
    label_en: str
    kind: str
    choices: tuple[str, ...]
    required: bool
    pattern: str
    max_length: int

    @classmethod
    def from_field(cls, field: ProductInputField) -> "InputFieldInfo":
        return cls(
            key=field.key,
            label_zh=field.label_zh,
            label_en=field.label_en,
            kind=field.kind,
            choices=field.choice_list(),
            required=field.required,
            pattern=field.pattern,
            max_length=field.max_length,
        )

    @property
    def label(self) -> str:
        """In the active language (Chinese unless English is active)."""
        return input_label(label_zh=self.label_zh, label_en=self.label_en)

    @property
    def form_name(self) -> str:
        """The storefront form's name for it (apps.orders.checkout_page reads it back)."""
        return f"field_{self.key}"


def input_label(*, label_zh: str, label_en: str) -> str:
    language = translation.get_language() or settings.LANGUAGE_CODE
    return (label_en or label_zh) if language.startswith("en") else (label_zh or label_en)


@dataclass(frozen=True)
class ProductInfo:
    """What the storefront and checkout need of a product, cacheable as is.
    It carries the merchant's texts in every language, so one cached copy
    serves both; `title`, `description` and `category_name` are the active
    language's."""

    id: int
    sku: str
    title_zh_hans: str
    title_en: str
    description_zh_hans: str
    description_en: str
    price: Decimal
    currency: str
    is_active: bool
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    per_buyer_limit: int
    max_per_order: int
    category_id: int | None
    min_page_seconds: int = 2
    limit_by_account: bool = False
    limit_by_device: bool = False
    limit_by_ip: bool = False
    max_unpaid_per_buyer: int = 1
    sale_paused: bool = False
    category_slug: str | None = None
    category_name_zh_hans: str | None = None
    category_name_en: str | None = None
    # The storefront's copies of the merchant's image (None: the letter tile).
    image_card_url: str | None = None
    image_page_url: str | None = None

    # Wholesale prices, (min_quantity, unit_price) ascending (ProductPriceTier).
    price_tiers: tuple[tuple[int, Decimal], ...] = ()
    # What the buyer fills in at checkout (ProductInputField), in order.
    input_fields: tuple[InputFieldInfo, ...] = ()

    # Product.Delivery: the page tells buyers of a manual or reusable-key product what they get.
    delivery_kind: str = Product.Delivery.KEYS

    @property
    def title(self) -> str:
        return in_active_language(self.title_zh_hans, self.title_en)

    @property
    def description(self) -> str:
        return in_active_language(self.description_zh_hans, self.description_en)

    @property
    def category_name(self) -> str | None:
        if self.category_slug is None:
            return None
        return in_active_language(self.category_name_zh_hans, self.category_name_en)

    @classmethod
    def from_product(cls, product: Product) -> "ProductInfo":
        category = product.category
        return cls(
            id=product.id,
            sku=product.sku,
            title_zh_hans=product.title_zh_hans or "",
            title_en=product.title_en or "",
            description_zh_hans=product.description_zh_hans or "",
            description_en=product.description_en or "",
            price=product.price,
            currency=product.currency,
            is_active=product.is_active,
            sale_starts_at=product.sale_starts_at,
            sale_ends_at=product.sale_ends_at,
            per_buyer_limit=product.per_buyer_limit,
            max_per_order=product.max_per_order,
            category_id=product.category_id,
            min_page_seconds=product.min_page_seconds,
            limit_by_account=product.limit_by_account,
            limit_by_device=product.limit_by_device,
            limit_by_ip=product.limit_by_ip,
            max_unpaid_per_buyer=product.max_unpaid_per_buyer,
            sale_paused=product.sale_paused,
            category_slug=category.slug if category else None,
            category_name_zh_hans=category.name_zh_hans if category else None,
            category_name_en=category.name_en if category else None,
            image_card_url=product.image_card.url if product.image_card else None,
            image_page_url=product.image_page.url if product.image_page else None,
            price_tiers=tuple((t.min_quantity, t.unit_price) for t in product.price_tiers.all()),
            input_fields=tuple(InputFieldInfo.from_field(f) for f in product.input_fields.all()),
            delivery_kind=product.delivery_kind,
        )

    def sale_state(self, now: datetime | None = None) -> str:
        """'not_started', 'open' or 'ended', from the sale window."""
        now = now or timezone.now()
        if self.sale_starts_at and now < self.sale_starts_at:
            return "not_started"
        if self.sale_ends_at and now >= self.sale_ends_at:
            return "ended"
        return "open"


@dataclass(frozen=True)
class CategoryListing:
    """One storefront section: a category (or, with slug None, the products
    that have none) and its active products in display order."""

    id: int | None
    slug: str | None
    name_zh_hans: str
    name_en: str
    products: tuple[ProductInfo, ...]

    @property
    def name(self) -> str:
        return in_active_language(self.name_zh_hans, self.name_en)


def product_cache_key(sku: str) -> str:
    return f"catalog:product:v2:{sku}"


def product_info_get(*, sku: str) -> ProductInfo | None:
    """The active-or-not product with this SKU, from cache; None if unknown."""
    key = product_cache_key(sku)
    info = _cache_get(key)
    if info is not None:
        return None if info == _MISSING else info
    route = stale_read_route()
    info = _stale_window_copy(key, route=route)
    if info is None:
        with _routed(route):
            product = (
                Product.objects.select_related("category")
                .prefetch_related("price_tiers", "input_fields")
                .filter(sku=sku)
                .first()
            )
        info = ProductInfo.from_product(product) if product else _MISSING
        _cache_fill(key, info, route=route)
    return None if info == _MISSING else info


def product_info_for_checkout(*, sku: str) -> ProductInfo | None:
    """product_info_get, served from this process's copy when it is at most
    CHECKOUT_PRODUCT_MEMO_SECONDS old: checkout then costs one Redis round trip
    (its script), not two. Safe because what decides a sale (active, paused,
    window, limits, price) is read by the checkout script from Redis itself;
    only the page-time minimum and the identities counted may lag an edit by
    those seconds."""
    info = _last_good.recall(product_cache_key(sku), max_age=settings.CHECKOUT_PRODUCT_MEMO_SECONDS)
    if info is not None:
        return None if info == _MISSING else info
    return product_info_get(sku=sku)


def catalog_listing_get() -> list[CategoryListing]:
    """Every category with its active products, then the active products
    without a category (if any), from cache. Empty categories are included so
    their pages exist; the home page leaves them out."""
    listing = _cache_get(LISTING_CACHE_KEY)
    if listing is not None:
        return listing
    route = stale_read_route()
    listing = _stale_window_copy(LISTING_CACHE_KEY, route=route)
    if listing is None:
        with _routed(route):
            listing = _catalog_listing_build()
        _cache_fill(LISTING_CACHE_KEY, listing, route=route)
    return listing


def category_listing_get(*, slug: str) -> CategoryListing | None:
    return next((section for section in catalog_listing_get() if section.slug == slug), None)


# Without Redis the shop still shows its pages (stock shown as paused) instead
# of failing: Redis is the gate, not the record. Each process keeps the last
# good copy of what it served and serves that while Redis is down, so a refresh
# storm does not move onto MariaDB; a copy older than CATALOG_FALLBACK_SECONDS
# is read from the database again (and kept again).
_last_good = LastGood()


def cache_forget(keys: list[str]) -> None:
    """Drop this process's copies too (an edit in this process shows at once;
    other processes' copies age out within CHECKOUT_PRODUCT_MEMO_SECONDS)."""
    for key in keys:
        _last_good.forget(key)
        _window_copies.forget(key)
        _pinned_copies.forget(key)


def _cache_get(key: str):
    try:
        value = cache.get(key)
    except RedisError:
        value = _last_good.recall(key, max_age=settings.CATALOG_FALLBACK_SECONDS)
        if value is None:
            logger.warning("catalog cache unreachable, reading %s from the database", key)
        return value
    if value is not None:
        _last_good.remember(key, value)
    return value


# When a merchant's edit committed (time.time()), kept while a replica may
# still serve the rows from before it (catalog edits, signals.py).
EDITED_AT_CACHE_KEY = "catalog:edited-at"


def catalog_replica_stale_window() -> float:
    """How long after an edit a replica in use may still lack it: the lag it
    may have and stay in use, plus one check interval."""
    return settings.REPLICA_MAX_LAG_SECONDS + settings.REPLICA_CHECK_SECONDS


# What a cache miss read within the stale window, kept in this process for a
# second (see _cache_fill): while nothing is cached, each process reads a hot
# product about once a second, not once a request. Replica readers' copies
# and pinned readers' (fresh, for them only) are kept apart.
_window_copies = LastGood()
_pinned_copies = LastGood()
WINDOW_COPY_SECONDS = 1.0


def _routed(route: str):
    """The context a miss reads in: on ROUTE_PRIMARY pinned to the primary,
    so that what is then cached for everyone cannot come from a replica found
    fit between the route's choice and the read. (With no replica configured
    the router's alias is the primary itself.)"""
    if route == ROUTE_PRIMARY and settings.REPLICA_ENABLED:
        return primary_reads()
    return contextlib.nullcontext()


def _cache_fill(key: str, value, *, route: str) -> None:
    """Cache what a miss read on `route` (stale_read_route()).

    Read from the primary as everyone reads it (ROUTE_PRIMARY: no replica, or
    the replica unfit), it is cached: the primary is never stale. Within the
    stale window of a catalog edit, a copy read from the replica may predate
    the edit, and cached it would outlive the replica's lag by a whole
    PRODUCT_CACHE_TTL; nor is the fresh copy that a pinned reader (the
    edit's author, read-your-writes) read cached then: the storefront shows an
    edit to everyone else when the replica has it, to its author at once.
    Either is kept in this process for WINDOW_COPY_SECONDS, for readers on the
    same route. With Redis unreachable the window is unknown and nothing can
    be cached: the copy becomes the process's last good one, served while
    Redis stays down (CATALOG_FALLBACK_SECONDS), as outside the window."""
    if route == ROUTE_PRIMARY:
        _cache_set(key, value)
        return
    within = _edited_within_stale_window()
    if within is None:
        _last_good.remember(key, value)
    elif within:
        (_window_copies if route == ROUTE_REPLICA else _pinned_copies).remember(key, value)
    else:
        _cache_set(key, value)


def _stale_window_copy(key: str, *, route: str):
    """This process's recent read of `key` within the stale window by a
    reader on the same route (see _cache_fill); None on ROUTE_PRIMARY."""
    if route == ROUTE_PRIMARY:
        return None
    copies = _window_copies if route == ROUTE_REPLICA else _pinned_copies
    return copies.recall(key, max_age=WINDOW_COPY_SECONDS)


def _edited_within_stale_window() -> bool | None:
    """Whether a catalog edit committed within the stale window; None when
    Redis, which keeps the mark, cannot be asked."""
    try:
        edited_at = cache.get(EDITED_AT_CACHE_KEY)
    except RedisError:
        return None
    return edited_at is not None and time.time() - edited_at < catalog_replica_stale_window()


def _cache_set(key: str, value) -> None:
    _last_good.remember(key, value)
    try:
        cache.set(key, value, settings.PRODUCT_CACHE_TTL)
    except RedisError:
        pass


def _catalog_listing_build() -> list[CategoryListing]:
    products = list(
        Product.objects.select_related("category")
        .prefetch_related("price_tiers", "input_fields")
        .filter(is_active=True)
        .order_by("id")
    )
    by_category: dict[int | None, list[ProductInfo]] = {}
    for product in products:
        by_category.setdefault(product.category_id, []).append(ProductInfo.from_product(product))
    listing = [
        CategoryListing(
            id=c.id,
            slug=c.slug,
            name_zh_hans=c.name_zh_hans or "",
            name_en=c.name_en or "",
            products=tuple(by_category.get(c.id, ())),
        )
        for c in Category.objects.all()
    ]
    if by_category.get(None):
        # The template names this section; a data row has no translatable name.
        listing.append(
            CategoryListing(id=None, slug=None, name_zh_hans="", name_en="", products=tuple(by_category[None]))
        )
    return listing
