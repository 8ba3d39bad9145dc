from django import forms
from django.utils.translation import gettext_lazy as _


class PurchaseForm(forms.Form):
    """The storefront's purchase form. The checkout service validates again;
    this form only gives the page its fields and first messages."""

    email = forms.EmailField(label=_("Email"), max_length=254)
    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, initial=1)
    # A fresh value per rendered form: a double click submits it twice and the
    # checkout script answers the second with the first order.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
    # Signed when the page was rendered; checkout refuses a submission faster
    # than the product's minimum time on the page (apps.catalog.page_tokens).
    page_token = forms.CharField(widget=forms.HiddenInput, required=False)
