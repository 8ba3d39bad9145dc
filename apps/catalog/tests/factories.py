from decimal import Decimal

import factory

from apps.catalog.models import Category, Product


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"Category {n}")
    # The Chinese (default language) field named outright: a bare `name` lands in
    # whichever language a test happens to have active (django-modeltranslation).
    name_zh_hans = factory.SelfAttribute("name")
    slug = factory.Sequence(lambda n: f"category-{n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    category = factory.SubFactory(CategoryFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n}")
    title = factory.Sequence(lambda n: f"Product {n}")
    description = "A test product."
    title_zh_hans = factory.SelfAttribute("title")
    description_zh_hans = factory.SelfAttribute("description")
    price = Decimal("9.90")
    currency = "CNY"
