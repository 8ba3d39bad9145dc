"""Circuit breakers: open after repeated failures, fail fast without calling,
close again on their own; state shared through Redis; and the mail breaker,
which leaves a delivered order delivered while mail is down."""

import os
import pickle
import smtplib
import subprocess
import sys
import time
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.conf import settings as django_settings
from django.core import mail

from apps.cardkeys.tests.factories import CardKeyFactory
from apps.core.breakers import BreakerOpen, breaker_call, breaker_states
from apps.core.errors import InvalidInput
from apps.orders.mail import order_keys_email_send
from apps.orders.models import Order
from apps.orders.tasks import send_order_keys_email_task
from apps.orders.tests.factories import OrderFactory
from apps.payments.tests.silent_server import SilentServer

RESET = 2  # seconds; pybreaker's Redis storage keeps whole seconds, so an open breaker stays open ≥ RESET - 1


@pytest.fixture(autouse=True)
def _breakers(settings):
    settings.CIRCUIT_BREAKERS = {
        "payment": {"fail_max": 3, "reset_timeout": RESET},
        "mail": {"fail_max": 3, "reset_timeout": RESET},
    }


class Dependency:
    """A stand-in for another system that counts the calls reaching it."""

    def __init__(self):
        self.calls = 0
        self.failing = True

    def __call__(self, value="ok"):
        self.calls += 1
        if self.failing:
            raise TimeoutError("timed out")
        return value


def trip(name: str, dependency: Dependency) -> None:
    for _ in range(2):
        with pytest.raises(TimeoutError):
            breaker_call(name, dependency)
    with pytest.raises(BreakerOpen):  # the third failure opens it
        breaker_call(name, dependency)


def test_a_breaker_opens_after_fail_max_failures_then_fails_fast():
    dependency = Dependency()
    trip("mail", dependency)
    assert dependency.calls == 3
    assert breaker_states()["mail"] == "open"

    started = time.monotonic()
    with pytest.raises(BreakerOpen) as raised:
        breaker_call("mail", dependency)
    assert time.monotonic() - started < 0.2
    assert dependency.calls == 3  # not called while open
    assert 1 <= raised.value.retry_after <= RESET


def test_after_reset_timeout_one_successful_call_closes_it():
    dependency = Dependency()
    trip("mail", dependency)
    time.sleep(RESET + 1)
    dependency.failing = False
    assert breaker_call("mail", dependency, "sent") == "sent"
    assert breaker_states()["mail"] == "closed"
    # Closed again: failures are counted afresh from zero.
    dependency.failing = True
    with pytest.raises(TimeoutError):
        breaker_call("mail", dependency)
    assert breaker_states()["mail"] == "closed"


def test_a_failed_trial_call_opens_it_again():
    dependency = Dependency()
    trip("mail", dependency)
    time.sleep(RESET + 1)
    with pytest.raises(BreakerOpen):
        breaker_call("mail", dependency)
    assert dependency.calls == 4
    assert breaker_states()["mail"] == "open"


def test_the_error_survives_pickling_for_a_task_retry():
    error = pickle.loads(pickle.dumps(BreakerOpen("mail", 7)))
    assert (error.name, error.retry_after, str(error)) == ("mail", 7, "circuit breaker 'mail' is open; retry in 7 s")


def test_a_refusal_with_a_reason_is_not_an_outage():
    def refuses():
        raise InvalidInput()

    for _ in range(5):
        with pytest.raises(InvalidInput):
            breaker_call("mail", refuses)
    assert breaker_states()["mail"] == "closed"


def test_the_state_is_shared_with_other_processes():
    """A worker's failures open the breaker for the web processes too."""
    trip("payment:sandbox", Dependency())
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cardshop.settings.test",
        "TEST_REDIS_KEY_PREFIX": django_settings.REDIS_KEY_PREFIX,
    }
    code = "import django; django.setup(); from apps.core.breakers import breaker_states; print(breaker_states())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "'payment:sandbox': 'open'" in out
    assert "'mail': 'closed'" in out


def test_states_list_mail_and_every_enabled_provider(settings):
    settings.PAYMENT_PROVIDERS = ["sandbox", "otherpay"]
    assert breaker_states() == {"mail": "closed", "payment:sandbox": "closed", "payment:otherpay": "closed"}


# --- mail


@pytest.mark.django_db
def test_a_hanging_mail_server_opens_the_breaker_and_the_order_stays_delivered(client, settings):
    order, token = OrderFactory.create_with_token(status=Order.Status.DELIVERED)
    CardKeyFactory(sold=True, order=order, product=order.product, secret="GAME-KEY-0001")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_TIMEOUT = 0.3

    with SilentServer() as server:
        settings.EMAIL_PORT = server.port
        for _ in range(2):
            with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
                order_keys_email_send(order_id=order.id)
        with pytest.raises(BreakerOpen):
            order_keys_email_send(order_id=order.id)
        assert breaker_states()["mail"] == "open"

        # Open: the task fails fast without connecting, and asks to be retried later.
        started = time.monotonic()
        with mock.patch.object(send_order_keys_email_task, "retry", side_effect=Retry()) as retry:
            send_order_keys_email_task.apply(args=[order.id])
        assert time.monotonic() - started < 0.2
        assert isinstance(retry.call_args.kwargs["exc"], BreakerOpen)
        assert retry.call_args.kwargs["countdown"] > 0
        assert server.connections == 3

    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    page = client.get(f"/orders/{order.order_no}?token={token}")
    assert "GAME-KEY-0001" in page.content.decode()

    # The mail server is back: after reset_timeout the next try sends and closes the breaker.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    time.sleep(RESET + 1)
    send_order_keys_email_task.apply(args=[order.id], throw=True)
    assert len(mail.outbox) == 1 and "GAME-KEY-0001" in mail.outbox[0].body
    assert breaker_states()["mail"] == "closed"
