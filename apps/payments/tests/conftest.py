from unittest import mock

import pytest

from apps.orders.tasks import fulfil_order_task
from apps.payments.sandbox_server import sandbox_notification_deliver_task


@pytest.fixture(autouse=True)
def _english(settings):
    """Pages render in the English source strings the assertions read."""
    settings.LANGUAGE_CODE = "en"


@pytest.fixture
def fulfil_enqueued():
    """The fulfilment enqueue point, replaced: counts calls, runs nothing."""
    with mock.patch.object(fulfil_order_task, "delay") as delay:
        yield delay


@pytest.fixture
def sandbox_sent():
    """The sandbox's delivery enqueue point, replaced: records what would be sent."""
    with mock.patch.object(sandbox_notification_deliver_task, "delay") as delay:
        yield delay


@pytest.fixture
def fake_stripe(settings):
    """A local fake of Stripe's API with keys made for this test; the shop's
    Stripe settings point at it and the provider is enabled."""
    from .fake_stripe import FakeStripe

    with FakeStripe() as fake:
        settings.STRIPE_SECRET_KEY = fake.api_key
        settings.STRIPE_WEBHOOK_SECRET = fake.webhook_secret
        settings.STRIPE_API_BASE = fake.url
        settings.PAYMENT_PROVIDERS = ["sandbox", "stripe"]
        yield fake
