"""Production refuses to start with epay enabled and its credentials missing
or malformed, and says which variable without echoing its value. Each case
loads the settings in a fresh interpreter (tests/test_production_settings.py)."""

import pytest

from tests.test_production_settings import REAL, assert_refused, load_production_settings

EPAY = {
    **REAL,
    "PAYMENT_PROVIDERS": "epay",
    "PAYMENT_DEFAULT_PROVIDER": "epay",
    "EPAY_GATEWAY_URL": "https://pay.example.com",
    "EPAY_PID": "1001",
    "EPAY_KEY": "a-merchant-key-that-must-never-be-echoed",
}


def test_starts_with_epay_configured():
    result = load_production_settings(**EPAY)
    assert result.returncode == 0, result.stderr


def test_epay_credentials_are_not_needed_while_epay_is_off():
    result = load_production_settings(**{**REAL, "EPAY_GATEWAY_URL": "", "EPAY_PID": "", "EPAY_KEY": ""})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EPAY_GATEWAY_URL", ""),
        ("EPAY_GATEWAY_URL", "http://pay.example.com"),
        ("EPAY_GATEWAY_URL", "pay.example.com"),
        ("EPAY_GATEWAY_URL", "https://"),
        ("EPAY_GATEWAY_URL", "https://pay.example.com/?pid=1"),
        ("EPAY_PID", ""),
        ("EPAY_PID", "10o1"),
        ("EPAY_PID", "-1"),
        ("EPAY_KEY", ""),
        ("EPAY_KEY", "   "),
    ],
)
def test_refuses_missing_or_malformed_epay_settings(name, value):
    result = load_production_settings(**{**EPAY, name: value})
    assert_refused(result, name)
    assert EPAY["EPAY_KEY"] not in result.stderr


def test_refuses_a_missing_variable_as_well():
    variables = {k: v for k, v in EPAY.items() if k != "EPAY_KEY"}
    assert_refused(load_production_settings(**variables), "EPAY_KEY")
