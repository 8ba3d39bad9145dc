"""The storefront's purchase form: the same checkout service as the JSON API,
answered with a redirect (to the order page, or back with the reason)."""

from dataclasses import replace

from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from apps.core.errors import ShopError
from apps.core.ratelimits import CHECKOUT_BUYER, CHECKOUT_IP, rate_limit

from .bot_checks import captcha_verify, honeypot_check
from .buyer_context import buyer_context
from .forms import CAPTCHA_ANSWER_FIELD, CAPTCHA_KEY_FIELD, HONEYPOT_FIELD
from .grants import order_grant_token
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
        messages.error(request, error.detail)
        for field_messages in error.extra.get("fields", {}).values():
            for message in field_messages:
                messages.error(request, message)
        return redirect("catalog:product", sku=sku)
    # This browser may see the order without the token in its address bar.
    order_grant_token(session=request.session, order_no=result.order_no, token=result.access_token)
    return redirect("orders:detail", order_no=result.order_no)


def _form_fields(post) -> dict[str, str]:
    """The product's checkout fields as the form names them (InputFieldInfo.form_name)."""
    return {name.removeprefix("field_"): value for name, value in post.items() if name.startswith("field_")}


def _form_quantity(text: str) -> int | str:
    """The form's text field as the integer checkout takes; anything else is
    passed on for checkout to refuse with its usual message."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else text
