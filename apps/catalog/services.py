"""Catalog writes: products and categories."""

import logging
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from apps.cardkeys.crypto import encrypt_secret, normalise_secret
from apps.core.errors import InvalidInput
from apps.core.images import CARD, PAGE, image_rendition
from apps.orders.models import HOLDING_STATUSES, Order
from apps.stock.selectors import stock_gate_state
from apps.stock.services import stock_adjust, stock_gate_forget, stock_withdraw

from .models import Category, Product

logger = logging.getLogger(__name__)

# The SKU appears in URLs (/p/<sku>) and Redis-free log lines: keep it plain.
SKU_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_PRICE_MAX = Decimal("9999999999.99")  # max_digits=12, decimal_places=2


def _price_errors(price) -> list[str]:
    try:
        price = Decimal(price)
    except (InvalidOperation, TypeError, ValueError):
        return [_("Enter a price such as 9.90.")]
    if not price.is_finite() or price <= 0:
        return [_("The price must be greater than zero.")]
    if price.as_tuple().exponent < -2:
        return [_("The price may have at most two decimal places.")]
    if price > _PRICE_MAX:
        return [_("The price is too large.")]
    return []


def _product_errors(
    *,
    sku: str,
    title: str,
    title_en: str,
    price,
    currency: str,
    per_buyer_limit: int,
    max_per_order: int,
    sale_starts_at: datetime | None,
    sale_ends_at: datetime | None,
    min_page_seconds: int,
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    max_sku = Product._meta.get_field("sku").max_length
    if not sku or len(sku) > max_sku or not SKU_RE.match(sku):
        errors["sku"] = [
            _("A SKU is 1 to %(max)d letters, digits, dots, dashes or underscores, starting with a letter or digit.")
            % {"max": max_sku}
        ]
    elif Product.objects.using("default").filter(sku=sku).exists():
        errors["sku"] = [_("A product with SKU %(sku)s already exists.") % {"sku": sku}]
    max_title = Product._meta.get_field("title").max_length
    if not title.strip() or len(title) > max_title:
        errors["title"] = [_("The title must be 1 to %(max)d characters.") % {"max": max_title}]
    if len(title_en) > max_title:
        errors["title_en"] = [_("The English title may have at most %(max)d characters.") % {"max": max_title}]
    if price_errors := _price_errors(price):
        errors["price"] = price_errors
    if not CURRENCY_RE.match(currency):
        errors["currency"] = [_("The currency must be a three-letter code such as CNY.")]
    for field, value in (("per_buyer_limit", per_buyer_limit), ("max_per_order", max_per_order)):
        if value < 1:
            errors[field] = [_("Must be at least 1.")]
    if min_page_seconds < 0:
        errors["min_page_seconds"] = [_("Must not be negative.")]
    for field, value in (("sale_starts_at", sale_starts_at), ("sale_ends_at", sale_ends_at)):
        if value is not None and value.tzinfo is None:
            errors[field] = [_("The time must carry a time zone.")]
    both_valid = sale_starts_at and sale_ends_at and "sale_starts_at" not in errors and "sale_ends_at" not in errors
    if both_valid and sale_ends_at <= sale_starts_at:
        errors["sale_ends_at"] = [_("The sale must end after it starts.")]
    return errors


def _delivery_errors(*, kind: str, stock_quantity: int, reusable_key: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if kind not in Product.Delivery.values:
        errors["delivery_kind"] = [_("Choose one of: %(kinds)s.") % {"kinds": ", ".join(Product.Delivery.values)}]
    if stock_quantity < 0:
        errors["stock_quantity"] = [_("Must not be negative.")]
    elif stock_quantity and kind == Product.Delivery.KEYS:
        errors["stock_quantity"] = [_("This product sells keys from its pool: upload keys to add stock.")]
    if kind == Product.Delivery.REUSABLE_KEY and not reusable_key.strip():
        errors["reusable_key"] = [_("A reusable-key product needs its key: enter the key every buyer gets.")]
    return errors


@transaction.atomic(durable=True)
def product_create(
    *,
    sku: str,
    title: str,
    price: Decimal | str,
    currency: str | None = None,
    description: str = "",
    title_en: str = "",
    description_en: str = "",
    category: Category | None = None,
    per_buyer_limit: int = 5,
    max_per_order: int = 5,
    sale_starts_at: datetime | None = None,
    sale_ends_at: datetime | None = None,
    min_page_seconds: int = 2,
    is_active: bool = True,
    delivery_kind: str = Product.Delivery.KEYS,
    stock_quantity: int = 0,
    reusable_key: str = "",
) -> Product:
    """Create a product. `title` and `description` are the Chinese (the shop's
    default language) texts; the English ones may be empty, and the English
    storefront then shows the Chinese. A reusable-key or manual product sells
    `stock_quantity` units; a reusable-key product needs its `reusable_key`.
    Raises InvalidInput (with `fields`) and writes nothing when any value is
    wrong, including a SKU that is taken."""
    currency = currency or settings.DEFAULT_CURRENCY
    errors = _product_errors(
        sku=sku,
        title=title,
        title_en=title_en,
        price=price,
        currency=currency,
        per_buyer_limit=per_buyer_limit,
        max_per_order=max_per_order,
        sale_starts_at=sale_starts_at,
        sale_ends_at=sale_ends_at,
        min_page_seconds=min_page_seconds,
    )
    errors.update(_delivery_errors(kind=delivery_kind, stock_quantity=stock_quantity, reusable_key=reusable_key))
    if errors:
        raise InvalidInput(fields=errors)
    try:
        with transaction.atomic():
            return Product.objects.create(
                delivery_kind=delivery_kind,
                stock_quantity=stock_quantity if delivery_kind != Product.Delivery.KEYS else 0,
                reusable_key_encrypted=reusable_key_encrypt(secret=reusable_key) if reusable_key.strip() else "",
                sku=sku,
                # Named per language: a bare `title` would land in the active
                # language's field (django-modeltranslation).
                title=title.strip(),
                title_zh_hans=title.strip(),
                title_en=title_en.strip(),
                description=description,
                description_zh_hans=description,
                description_en=description_en,
                price=Decimal(price),
                currency=currency,
                category=category,
                per_buyer_limit=per_buyer_limit,
                max_per_order=max_per_order,
                sale_starts_at=sale_starts_at,
                sale_ends_at=sale_ends_at,
                min_page_seconds=min_page_seconds,
                is_active=is_active,
            )
    except IntegrityError:
        # Another writer took the SKU between the check and the insert.
        raise InvalidInput(fields={"sku": [_("A product with SKU %(sku)s already exists.") % {"sku": sku}]}) from None


@transaction.atomic(durable=True)
def product_sale_window_set(*, product: Product, starts_at: datetime | None, ends_at: datetime | None) -> Product:
    """Move a product's sale window. Raises InvalidInput if it ends before it starts."""
    if starts_at and ends_at and ends_at <= starts_at:
        raise InvalidInput(fields={"sale_ends_at": [_("The sale must end after it starts.")]})
    product.sale_starts_at = starts_at
    product.sale_ends_at = ends_at
    product.save(update_fields=["sale_starts_at", "sale_ends_at", "updated_at"])
    return product


@transaction.atomic(durable=True)
def category_ensure(*, slug: str, name: str, name_en: str = "", sort_order: int = 0) -> Category:
    """The category with this slug, created (or renamed) to match. `name` is
    the Chinese name; an empty English one shows the Chinese."""
    names = {"name": name, "name_zh_hans": name, "name_en": name_en}
    category, created = Category.objects.select_for_update().get_or_create(
        slug=slug, defaults={**names, "sort_order": sort_order}
    )
    wanted = (name, name_en, sort_order)
    if not created and (category.name_zh_hans, category.name_en or "", category.sort_order) != wanted:
        category.name_zh_hans, category.name_en, category.sort_order = wanted
        category.save(update_fields=["name_zh_hans", "name_en", "sort_order"])
    return category


def product_image_renditions_prepare(*, product: Product) -> Product:
    """The card and page copies of the product's new image (or none, for a
    cleared one), stored and set on the product, which is not saved: the
    admin makes them before its save writes the product row, so Pillow's work
    holds no lock that the row's other writers (reusable-key fulfilment, the
    stock number) would wait on. The image was validated by the form
    (apps.core.images)."""
    if product.image:
        product.image_card.save(f"{product.pk}-card.webp", image_rendition(product.image, size=CARD), save=False)
        product.image_page.save(f"{product.pk}-page.webp", image_rendition(product.image, size=PAGE), save=False)
    else:
        product.image_card = product.image_page = ""
    return product


def product_image_renditions_make(*, product: Product) -> Product:
    """The copies made and saved, for a product just added (its row is its
    own until the admin's save commits). Saving drops the cached product
    info (signals.py)."""
    product_image_renditions_prepare(product=product)
    product.save(update_fields=["image_card", "image_page", "updated_at"])
    return product


def _held_units(product_id: int) -> int:
    """Units reserved by orders of the product not delivered yet: the part
    of its stock already promised. The gate's reservations include those
    not yet persisted; the record's holding orders count when Redis cannot
    be asked (or lags it)."""
    held = Order.objects.filter(product_id=product_id, status__in=HOLDING_STATUSES).aggregate(n=Sum("quantity"))["n"]
    try:
        _stock, reservations = stock_gate_state(product_id=product_id)
    except RedisError:
        reservations = {}
    return max(held or 0, sum(r.quantity for r in reservations.values()))


def product_stock_refused(*, product_id: int, quantity: int) -> str | None:
    """Why a product's stock number may not be set to `quantity`, or None."""
    if quantity < 0:
        return _("Must not be negative.")
    held = _held_units(product_id)
    if quantity < held:
        return _(
            "%(held)d units are held by orders awaiting payment or delivery; the stock cannot be set below that."
        ) % {"held": held}
    return None


def product_stock_set(*, product_id: int, quantity: int) -> int:
    """Set the stock number of a product not sold from the key pool (reusable
    key, manual delivery). Runs in its own transaction, or in the caller's
    (the admin's save, whose other writes it must share). Locks the product
    row, so the difference is exact against a delivery taking from the
    number meanwhile. Returns the difference.

    The gate moves with it. A decrease is taken from the live counter first,
    atomically and only if that many units are free (checkouts keep
    reserving until the write commits, so a check of the orders alone can
    be overtaken), and given back if the write then fails. An increase is
    added after commit, as a key import does. A gate not warmed is left
    alone: the warm-up rebuilds it from the record, reading the number under
    the same row lock, so never before this commits. A decrease is refused
    while Redis cannot be asked: a gate cut off (not restarted) still holds
    the old count, and checkout resumes with it when the network heals.
    A rollback of the caller's transaction after this returned leaves a
    decrease's units taken from the gate (it errs low, never high) until
    reconciliation's drift repair returns them.

    Raises InvalidInput for a pool product, a negative number, or a number
    below the units orders already hold (or the gate has reserved)."""
    taken = 0
    try:
        with transaction.atomic():
            product = Product.objects.select_for_update().get(id=product_id)
            if product.sells_from_pool:
                raise InvalidInput(
                    fields={"stock_quantity": [_("This product sells keys from its pool: upload keys to add stock.")]}
                )
            if reason := product_stock_refused(product_id=product_id, quantity=quantity):
                raise InvalidInput(fields={"stock_quantity": [reason]})
            delta = quantity - product.stock_quantity
            if delta < 0:
                taken = _gate_withdraw(product_id, -delta)
            if delta:
                Product.objects.filter(id=product_id).update(stock_quantity=quantity)
            if delta > 0:
                transaction.on_commit(lambda: _gate_adjust_rollback_unsafe(product_id, delta))
    except BaseException:
        # The write or its commit failed: the units go back to the gate.
        if taken:
            _gate_adjust_rollback_unsafe(product_id, taken)
        raise
    return delta


def _gate_withdraw(product_id: int, units: int) -> int:
    """Take a decrease's units from the gate; returns the units taken (0 when
    the gate is unknown). Raises InvalidInput when fewer are free: checkouts
    reserved them since the form's check."""
    try:
        withdrawal = stock_withdraw(product_id=product_id, units=units)
    except RedisError:
        # The gate cannot be asked, so it cannot be moved either: refuse rather
        # than leave it higher than the record (P1); the merchant retries.
        raise InvalidInput(
            fields={"stock_quantity": [_("The stock gate (Redis) is unreachable; try again shortly.")]}
        ) from None
    if withdrawal.code == "short":
        raise InvalidInput(
            fields={
                "stock_quantity": [
                    _(
                        "Only %(free)d units are free (orders reserved the rest meanwhile); "
                        "the stock can be lowered by at most that."
                    )
                    % {"free": withdrawal.stock}
                ]
            }
        )
    return units if withdrawal.code == "ok" else 0


def _gate_adjust_rollback_unsafe(product_id: int, delta: int) -> None:
    # Redis is only the gate: if it is unreachable, reconciliation sees the drift and repairs it.
    try:
        stock_adjust(product_id=product_id, delta=delta)
    except RedisError:
        logger.warning("stock counter of product %s not adjusted by %s; reconcile will", product_id, delta)


def product_delivery_change_refused(*, product: Product) -> str | None:
    """Why the product's delivery kind may not change now, or None. The gate
    counts a product's stock by its kind, so the kind changes only while no
    order holds stock or waits for its delivery."""
    busy = Order.objects.filter(
        product_id=product.id, status__in=(*HOLDING_STATUSES, Order.Status.NEEDS_ATTENTION)
    ).exists()
    if busy or _held_units(product.id):
        return _("The delivery can change only while no order of this product awaits payment, delivery or an operator.")
    return None


def product_delivery_changed_on_commit(*, product_id: int) -> None:
    """After a change of delivery kind, the gate's stock is counted anew (the
    other figure now): forget it, and the warm-up rebuilds it from the record
    within seconds (checkout of the product pauses meanwhile)."""

    def forget():
        try:
            stock_gate_forget(product_id=product_id)
        except RedisError:
            logger.warning("gate of product %s not reset after a delivery change; rebuild it", product_id)

    transaction.on_commit(forget)


def reusable_key_encrypt(*, secret: str) -> str:
    """The stored form of a reusable key (never in Redis, never in logs)."""
    return encrypt_secret(normalise_secret(secret))
