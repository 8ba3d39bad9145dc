import factory
from django.utils import timezone

from apps.cardkeys.crypto import encrypt_secret, fingerprint_secret
from apps.cardkeys.models import CardKey, KeyBatch
from apps.catalog.tests.factories import ProductFactory
from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory


class KeyBatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = KeyBatch

    product = factory.SubFactory(ProductFactory)
    source_name = "keys.txt"


class CardKeyFactory(factory.django.DjangoModelFactory):
    """A stored key; pass `secret=` to choose its plaintext. `sold=True` makes
    it sold to a delivered order of its product (a sold key must name its
    order); to sell it to a given order pass `order=` and `product=order.product`."""

    class Meta:
        model = CardKey

    class Params:
        secret = factory.Sequence(lambda n: f"KEY-{n:08d}-SECRET")
        sold = factory.Trait(
            status=CardKey.Status.SOLD,
            order=factory.SubFactory(
                OrderFactory, product=factory.SelfAttribute("..product"), status=Order.Status.DELIVERED
            ),
            sold_at=factory.LazyFunction(timezone.now),
        )

    product = factory.SubFactory(ProductFactory)
    batch = factory.SubFactory(KeyBatchFactory, product=factory.SelfAttribute("..product"))
    secret_encrypted = factory.LazyAttribute(lambda o: encrypt_secret(o.secret))
    fingerprint = factory.LazyAttribute(lambda o: fingerprint_secret(o.secret))
