import hashlib
import secrets

import factory

from apps.catalog.tests.factories import ProductFactory
from apps.orders.models import Order


class OrderFactory(factory.django.DjangoModelFactory):
    """An order awaiting payment. Pass `token=...` to choose the access token;
    it is stored hashed, like checkout does (create_with_token returns it)."""

    class Meta:
        model = Order

    class Params:
        token = factory.LazyFunction(lambda: secrets.token_urlsafe(24))

    product = factory.SubFactory(ProductFactory)
    # The shape checkout gives: date, product id, random part.
    order_no = factory.LazyAttribute(lambda o: f"261122-{o.product.id}-{secrets.token_hex(6).upper()}")
    buyer_email = "buyer@example.com"
    quantity = 1
    unit_price = factory.LazyAttribute(lambda o: o.product.price)
    amount = factory.LazyAttribute(lambda o: o.unit_price * o.quantity)
    currency = factory.LazyAttribute(lambda o: o.product.currency)
    status = Order.Status.AWAITING_PAYMENT
    access_token_hash = factory.LazyAttribute(lambda o: hashlib.sha256(o.token.encode()).hexdigest())

    @classmethod
    def create_with_token(cls, **kwargs) -> tuple[Order, str]:
        """The order and the access token its holder would have."""
        token = secrets.token_urlsafe(24)
        return cls(token=token, **kwargs), token
