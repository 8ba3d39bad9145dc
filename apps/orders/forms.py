from captcha.fields import CaptchaField
from django import forms
from django.utils.translation import gettext_lazy as _

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
