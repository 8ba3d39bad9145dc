from decimal import Decimal

import factory

from apps.cardkeys.crypto import encrypt_secret, fingerprint_secret
from apps.cardkeys.models import CardKey, KeyBatch
from apps.catalog.models import Product


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"IMP-SKU-{n}")
    title = factory.Sequence(lambda n: f"Game card {n}")
    price = Decimal("9.90")


class KeyBatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = KeyBatch

    product = factory.SubFactory(ProductFactory)
    source_name = "keys.txt"


class CardKeyFactory(factory.django.DjangoModelFactory):
    """A stored key; pass `secret=` to choose its plaintext."""

    class Meta:
        model = CardKey

    class Params:
        secret = factory.Sequence(lambda n: f"KEY-{n:08d}-SECRET")

    product = factory.SubFactory(ProductFactory)
    batch = factory.SubFactory(KeyBatchFactory, product=factory.SelfAttribute("..product"))
    secret_encrypted = factory.LazyAttribute(lambda o: encrypt_secret(o.secret))
    fingerprint = factory.LazyAttribute(lambda o: fingerprint_secret(o.secret))


def sold_key(*, product, secret: str = "SOLD-KEY-0001") -> CardKey:
    """A key already sold to an order of `product` (a sold key must name its order)."""
    from uuid import uuid4

    from django.utils import timezone

    from apps.orders.models import Order

    order = Order.objects.create(
        order_no=uuid4().hex[:20],
        product=product,
        buyer_email="buyer@example.com",
        quantity=1,
        unit_price=product.price,
        amount=product.price,
        currency=product.currency,
        access_token_hash="0" * 64,
        status=Order.Status.DELIVERED,
    )
    return CardKeyFactory(
        product=product, secret=secret, status=CardKey.Status.SOLD, order=order, sold_at=timezone.now()
    )
