"""Orders in the database with a known access token, for payment and order-page tests."""

import hashlib
import secrets
from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from apps.cardkeys.crypto import encrypt_secret, fingerprint_secret
from apps.cardkeys.models import CardKey
from apps.catalog.models import Product
from apps.orders.models import Order
from apps.payments.models import PaymentEvent


class ProductFactory(DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"PAY-{n}")
    title = factory.Sequence(lambda n: f"Game card {n}")
    price = Decimal("9.90")
    currency = "CNY"


class OrderFactory(DjangoModelFactory):
    """Pass `token=...` to choose the access token; it is stored hashed, like checkout does."""

    class Meta:
        model = Order

    class Params:
        token = factory.LazyFunction(lambda: secrets.token_urlsafe(24))

    product = factory.SubFactory(ProductFactory)
    # The shape checkout gives: date, product id, random part.
    order_no = factory.LazyAttribute(lambda o: f"261122-{o.product.id}-{secrets.token_hex(6).upper()}")
    buyer_email = "buyer@example.com"
    quantity = 1
    unit_price = Decimal("9.90")
    amount = factory.LazyAttribute(lambda o: o.unit_price * o.quantity)
    currency = "CNY"
    status = Order.Status.AWAITING_PAYMENT
    access_token_hash = factory.LazyAttribute(lambda o: hashlib.sha256(o.token.encode()).hexdigest())


def order_with_token(**kwargs) -> tuple[Order, str]:
    token = secrets.token_urlsafe(24)
    return OrderFactory(token=token, **kwargs), token


def paid_event_create(*, order: Order, provider: str = "sandbox") -> PaymentEvent:
    return PaymentEvent.objects.create(
        provider=provider,
        event_id=f"test-paid-{order.order_no}",
        kind=PaymentEvent.Kind.PAID,
        order=order,
        amount=order.amount,
        currency=order.currency,
    )


def sold_key_create(*, order: Order, secret: str) -> CardKey:
    return CardKey.objects.create(
        product=order.product,
        secret_encrypted=encrypt_secret(secret),
        fingerprint=fingerprint_secret(secret),
        status=CardKey.Status.SOLD,
        order=order,
    )
