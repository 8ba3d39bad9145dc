"""The shop settings' texts per language (django-modeltranslation, as in
apps/catalog/translation.py)."""

from modeltranslation.translator import TranslationOptions, register

from .models import ShopSettings


@register(ShopSettings)
class ShopSettingsTranslationOptions(TranslationOptions):
    fields = ("name", "banner", "footer", "contact")
    # All optional: an empty text is left out, an empty name is the default one.
    required_languages = ()
