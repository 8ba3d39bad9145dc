"""What the merchant writes per language (django-modeltranslation): each field
here gets a column per language (title_zh_hans, title_en); `product.title`
reads the active language's, falling back to the other when it is empty."""

from modeltranslation.translator import TranslationOptions, register

from .models import Category, Product


@register(Product)
class ProductTranslationOptions(TranslationOptions):
    fields = ("title", "description")
    # The Chinese title is the one every product must have (the admin requires it).
    required_languages = ("zh-hans",)


@register(Category)
class CategoryTranslationOptions(TranslationOptions):
    fields = ("name",)
    required_languages = ("zh-hans",)
