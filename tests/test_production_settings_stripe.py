"""Production refuses to start with Stripe enabled and its credentials
missing or malformed, and never echoes them (a typo'd key is still a secret)."""

import pytest

from .test_production_settings import REAL, assert_refused, load_production_settings

STRIPE = {
    **REAL,
    "PAYMENT_PROVIDERS": "sandbox,stripe",
    "STRIPE_SECRET_KEY": "sk_live_" + "a" * 24,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "b" * 32,
    "STRIPE_API_BASE": "https://api.stripe.com",
}


@pytest.mark.parametrize("key", ["sk_live_" + "a" * 24, "sk_test_" + "a" * 24, "rk_live_" + "a" * 24])
def test_starts_with_stripe_configured(key):
    result = load_production_settings(**{**STRIPE, "STRIPE_SECRET_KEY": key})
    assert result.returncode == 0, result.stderr


def test_stripe_credentials_are_not_needed_when_stripe_is_not_enabled():
    result = load_production_settings(**{**REAL, "STRIPE_SECRET_KEY": "", "STRIPE_WEBHOOK_SECRET": ""})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("value", ["", "pk_live_" + "a" * 24, "typo-sk_live_secretsecret"])
def test_refuses_a_missing_or_malformed_secret_key_without_echoing_it(value):
    result = load_production_settings(**{**STRIPE, "STRIPE_SECRET_KEY": value})
    assert_refused(result, "STRIPE_SECRET_KEY is missing or malformed")
    if value:
        assert value not in result.stderr


@pytest.mark.parametrize("value", ["", "b" * 38, "whsec_"])
def test_refuses_a_missing_or_malformed_webhook_secret_without_echoing_it(value):
    result = load_production_settings(**{**STRIPE, "STRIPE_WEBHOOK_SECRET": value})
    assert_refused(result, "STRIPE_WEBHOOK_SECRET is missing or malformed")
    if len(value) > 6:
        assert value not in result.stderr


def test_refuses_a_plain_http_api_base():
    result = load_production_settings(**{**STRIPE, "STRIPE_API_BASE": "http://api.stripe.com"})
    assert_refused(result, "STRIPE_API_BASE must be an https:// address")
