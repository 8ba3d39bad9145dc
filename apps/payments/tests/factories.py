import time

import factory

from apps.orders.tests.factories import OrderFactory
from apps.payments.models import PaymentEvent


class PaymentEventFactory(factory.django.DjangoModelFactory):
    """A provider's "paid" notification for the whole of its order's amount."""

    class Meta:
        model = PaymentEvent

    order = factory.SubFactory(OrderFactory)
    provider = "sandbox"
    event_id = factory.LazyAttribute(lambda o: f"test-paid-{o.order.order_no}")
    kind = PaymentEvent.Kind.PAID
    amount = factory.LazyAttribute(lambda o: o.order.amount)
    currency = factory.LazyAttribute(lambda o: o.order.currency)


class PaidNotificationFactory(factory.DictFactory):
    """The fields of a provider's "paid" notification for `order`'s whole amount,
    to sign with notification_sign. Without an order, pass order_no, amount and currency."""

    class Params:
        order = None

    event_id = factory.LazyAttribute(lambda o: f"test-paid-{o.order_no}")
    order_no = factory.LazyAttribute(lambda o: o.order.order_no)
    amount = factory.LazyAttribute(lambda o: str(o.order.amount))
    currency = factory.LazyAttribute(lambda o: o.order.currency)
    kind = "paid"
    timestamp = factory.LazyFunction(lambda: int(time.time()))
