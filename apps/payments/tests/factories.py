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
