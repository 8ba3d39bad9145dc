"""Storefront pages. Everything here is read from the cache (product info,
listing) and the Redis stock counters: a page refresh never reaches MariaDB
once the cache is warm."""

import math
import uuid

from django.conf import settings
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from apps.orders.bot_checks import captcha_needed
from apps.orders.buyer_context import buyer_context, device_cookie_ensure
from apps.orders.forms import PurchaseForm, purchase_form_forget, purchase_form_kept
from apps.stock.selectors import SOLD_OUT, UNKNOWN, stock_remaining_many, stock_status

from .page_tokens import page_token_good, page_token_new
from .selectors import ProductInfo, catalog_listing_get, category_listing_get, product_info_get


def _not_found(request):
    return render(request, "catalog/not_found.html", status=404)


def _cards(products: tuple[ProductInfo, ...], remaining: dict[int, int | None], now) -> list[dict]:
    return [{"product": p, "stock": stock_status(remaining.get(p.id)), "sale": p.sale_state(now)} for p in products]


@require_safe
def home(request):
    sections = [section for section in catalog_listing_get() if section.products]
    remaining = stock_remaining_many(product_ids=[p.id for s in sections for p in s.products])
    now = timezone.now()
    return render(
        request,
        "catalog/home.html",
        {"sections": [{"section": s, "cards": _cards(s.products, remaining, now)} for s in sections]},
    )


@require_safe
def category(request, slug):
    section = category_listing_get(slug=slug)
    if section is None:
        return _not_found(request)
    remaining = stock_remaining_many(product_ids=[p.id for p in section.products])
    return render(
        request,
        "catalog/category.html",
        {"section": section, "cards": _cards(section.products, remaining, timezone.now())},
    )


@require_safe
def product(request, sku):
    info = product_info_get(sku=sku)
    if info is None or not info.is_active:
        return _not_found(request)
    remaining = stock_remaining_many(product_ids=[info.id])[info.id]
    # The merchant's kill switch shows as the same "sale paused" as unknown stock.
    stock = UNKNOWN if info.sale_paused else stock_status(remaining)
    now = timezone.now()
    sale = info.sale_state(now)
    can_buy = sale == "open" and stock not in (SOLD_OUT, UNKNOWN)
    # Before the sale the form is live and only its button waits: the page's
    # script opens it at zero, in place (static/js/purchase.js).
    opens_later = sale == "not_started" and stock != SOLD_OUT
    # Back from a refusal: what the buyer typed, and the token they held.
    kept = purchase_form_kept(request=request, sku=info.sku)
    page_token = kept.get("page_token")
    if not page_token_good(sku=info.sku, token=page_token):
        page_token = page_token_new(sku=info.sku)
    # A fresh key per rendered form: a double submit of this page is one order.
    # The captcha only where the form can be sent: a countdown's refresh storm
    # costs no bot-counter read.
    form = PurchaseForm(
        initial={
            "email": kept.get("email", ""),
            "quantity": kept.get("quantity") or 1,
            "idempotency_key": uuid.uuid4().hex,
            "page_token": page_token,
        },
        captcha=can_buy and captcha_needed(product_id=info.id, buyer=buyer_context(request, page_token=None)),
    )
    form.fields["quantity"].widget.attrs.update(max=info.max_per_order)
    seconds_to_start = math.ceil((info.sale_starts_at - now).total_seconds()) if sale == "not_started" else None
    response = render(
        request,
        "catalog/product.html",
        {
            "product": info,
            "stock": stock,
            "remaining": remaining,
            "sale": sale,
            "seconds_to_start": seconds_to_start,
            "form": form,
            "can_buy": can_buy,
            "opens_later": opens_later,
            "page_token_max_age": settings.PAGE_TOKEN_MAX_AGE,
            "kept_coupon": kept.get("coupon", ""),
            # The product's checkout fields, each with what a refusal kept of it.
            "checkout_fields": [
                (field, str(kept.get("fields", {}).get(field.form_name, ""))) for field in info.input_fields
            ],
        },
    )
    purchase_form_forget(request=request, response=response, sku=info.sku)  # kept for one view
    device_cookie_ensure(request, response)
    return response
