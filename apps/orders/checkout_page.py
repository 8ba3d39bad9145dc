"""The storefront's purchase form: the same checkout service as the JSON API,
answered with a redirect (to the order page, or back with the reason)."""

from dataclasses import replace

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from apps.core.errors import ShopError
from apps.core.ratelimits import CHECKOUT_BUYER, CHECKOUT_IP, rate_limit

from .bot_checks import captcha_verify, honeypot_check
from .buyer_context import buyer_context
from .exceptions import UnpaidLimit
from .forms import CAPTCHA_ANSWER_FIELD, CAPTCHA_KEY_FIELD, HONEYPOT_FIELD, purchase_form_keep
from .grants import order_grant_token, order_unpaid_granted
from .services.checkout import order_checkout


@require_POST
@rate_limit(CHECKOUT_IP, CHECKOUT_BUYER, page=True)  # before checkout: a refused request reserves nothing
def checkout(request, sku: str):
    try:
        buyer = buyer_context(request, page_token=request.POST.get("page_token"))
        honeypot_check(sku=sku, buyer=buyer, honeypot=request.POST.get(HONEYPOT_FIELD, ""))
        solved = captcha_verify(
            sku=sku, buyer=buyer, key=request.POST.get(CAPTCHA_KEY_FIELD), answer=request.POST.get(CAPTCHA_ANSWER_FIELD)
        )
        result = order_checkout(
            sku=sku,
            email=request.POST.get("email", ""),
            quantity=_form_quantity(request.POST.get("quantity", "")),
            idempotency_key=request.POST.get("idempotency_key") or None,
            buyer=replace(buyer, captcha_solved=solved),
            coupon=request.POST.get("coupon"),
            fields=_form_fields(request.POST),
        )
    except ShopError as error:
        if isinstance(error, UnpaidLimit):
            messages.error(request, _unpaid_limit_message(request, sku=sku, detail=error.detail))
        else:
            messages.error(request, error.detail)
        for field_messages in error.extra.get("fields", {}).values():
            for message in field_messages:
                messages.error(request, message)
        # Back to the form with what the buyer typed still in it.
        response = redirect("catalog:product", sku=sku)
        purchase_form_keep(response=response, sku=sku, data=request.POST)
        return response
    # This browser may see the order without the token in its address bar.
    order_grant_token(session=request.session, order_no=result.order_no, token=result.access_token)
    return redirect("orders:detail", order_no=result.order_no)


def _unpaid_limit_message(request, *, sku: str, detail: str):
    """The refusal, with a link to the unpaid order it names: the newest one
    of this product this browser holds, else the lookup page (the order was
    placed elsewhere, or this browser forgot it)."""
    order_no = order_unpaid_granted(request=request, sku=sku)
    if order_no:
        return format_html(
            '{} <a href="{}">{}</a>',
            detail,
            reverse("orders:detail", kwargs={"order_no": order_no}),
            _("Open your unpaid order"),
        )
    return format_html('{} <a href="{}">{}</a>', detail, reverse("orders:lookup"), _("Find your order"))


def _form_fields(post) -> dict[str, str]:
    """The product's checkout fields as the form names them (InputFieldInfo.form_name)."""
    return {name.removeprefix("field_"): value for name, value in post.items() if name.startswith("field_")}


def _form_quantity(text: str) -> int | str:
    """The form's text field as the integer checkout takes; anything else is
    passed on for checkout to refuse with its usual message."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else text
