import json

from captcha.fields import CaptchaField
from cryptography.fernet import InvalidToken
from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from apps.cardkeys.crypto import cardkey_fernet, encrypt_secret

# The honeypot's name: what a form-filling bot expects to fill in
# (apps.orders.bot_checks refuses a submission that did).
HONEYPOT_FIELD = "website"
# The captcha widget's two inputs: the captcha's key and the buyer's answer.
CAPTCHA_KEY_FIELD, CAPTCHA_ANSWER_FIELD = "captcha_0", "captcha_1"


class PurchaseForm(forms.Form):
    """The storefront's purchase form. The checkout service validates again;
    this form only gives the page its fields and first messages.

    With `captcha=True` (the client tripped the bot checks' soft threshold)
    the form carries a captcha."""

    email = forms.EmailField(label=_("Email"), max_length=254)
    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, initial=1)
    # A fresh value per rendered form: a double click submits it twice and the
    # checkout script answers the second with the first order.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
    # Signed when the page was rendered; checkout refuses a submission faster
    # than the product's minimum time on the page (apps.catalog.page_tokens).
    page_token = forms.CharField(widget=forms.HiddenInput, required=False)
    # The honeypot. A text input hidden by CSS, not type=hidden: bots skip
    # hidden inputs but fill every text box; people never reach it (no tab
    # stop, no autofill, hidden from screen readers by the template).
    website = forms.CharField(
        label=_("Website"), required=False, widget=forms.TextInput(attrs={"tabindex": "-1", "autocomplete": "off"})
    )

    def __init__(self, *args, captcha: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.has_captcha = captcha
        if captcha:
            self.fields["captcha"] = CaptchaField(label=_("Type the letters in the picture"))


# What a refused purchase leaves for the product page it goes back to: what
# the buyer typed (email, quantity, coupon, the product's checkout fields)
# and the page token held (so the minimum time on the page keeps counting
# from the first view). A cookie sealed with the card keys' Fernet keys
# (authenticated and unreadable: a field may be an account id), read once by
# that page: no session write on the refusal path a flash crowd takes, and
# nothing of it outlives KEPT_SECONDS.
KEPT_COOKIE = "purchase_kept"
KEPT_SECONDS = 300
# The sealed value's length at most, well inside a browser's 4 KB per cookie.
KEPT_COOKIE_MAX = 3500


def purchase_form_keep(*, response, sku: str, data) -> None:
    kept = {
        "sku": sku,
        "email": str(data.get("email", ""))[:254],
        "quantity": str(data.get("quantity", ""))[:6],
        "page_token": str(data.get("page_token", ""))[:512],
        "coupon": str(data.get("coupon", ""))[:32],
        "fields": {name: str(value)[:500] for name, value in data.items() if name.startswith("field_")},
    }
    sealed = encrypt_secret(json.dumps(kept, ensure_ascii=False))
    if len(sealed) > KEPT_COOKIE_MAX:
        # Browsers drop a cookie past 4 KB: keep the rest rather than nothing.
        kept["fields"] = {}
        sealed = encrypt_secret(json.dumps(kept, ensure_ascii=False))
    response.set_cookie(
        KEPT_COOKIE,
        sealed,
        max_age=KEPT_SECONDS,
        path=f"/p/{sku}",  # that product's page (and its buy URL) only
        httponly=True,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
    )


def purchase_form_kept(*, request, sku: str) -> dict:
    """What a refusal kept for this product's form, or {}."""
    raw = request.COOKIES.get(KEPT_COOKIE)
    if not raw:
        return {}
    try:
        kept = json.loads(cardkey_fernet().decrypt(raw.encode("ascii"), ttl=KEPT_SECONDS))
    except (InvalidToken, ValueError):  # tampered, too old, or not ours (UnicodeError is a ValueError)
        return {}
    return kept if isinstance(kept, dict) and kept.get("sku") == sku else {}


def purchase_form_forget(*, request, response, sku: str) -> None:
    """Drop what was kept once the page showed it: a later view starts clean."""
    if KEPT_COOKIE in request.COOKIES:
        response.delete_cookie(KEPT_COOKIE, path=f"/p/{sku}", samesite="Lax")
