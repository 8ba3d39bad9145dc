"""Production refuses to start with Alipay enabled and its credentials missing
or malformed, and says which variable without echoing its value. Each case
loads the settings in a fresh interpreter (tests/test_production_settings.py)."""

import pytest

from tests.test_production_settings import REAL, assert_refused, load_production_settings

from .fake_alipay import rsa_pair

_, APP_PRIVATE, APP_PUBLIC = rsa_pair()
_, _ALIPAY_PRIVATE, ALIPAY_PUBLIC = rsa_pair()

ALIPAY = {
    **REAL,
    "PAYMENT_PROVIDERS": "alipay",
    "ALIPAY_APP_ID": "2021000123456789",
    "ALIPAY_APP_PRIVATE_KEY": APP_PRIVATE,
    "ALIPAY_PUBLIC_KEY": ALIPAY_PUBLIC,
    "ALIPAY_GATEWAY_URL": "https://openapi.alipay.com/gateway.do",
}
# The base64 body of the private key: no refusal may carry any of it.
PRIVATE_BODY = "".join(APP_PRIVATE.strip().splitlines()[1:-1])


def test_starts_with_alipay_configured():
    result = load_production_settings(**ALIPAY)
    assert result.returncode == 0, result.stderr


def test_a_pem_on_one_line_with_escaped_line_breaks_is_taken():
    result = load_production_settings(**{**ALIPAY, "ALIPAY_APP_PRIVATE_KEY": APP_PRIVATE.replace("\n", "\\n")})
    assert result.returncode == 0, result.stderr


def test_alipay_credentials_are_not_needed_while_alipay_is_off():
    result = load_production_settings(**{**REAL, "ALIPAY_APP_ID": "", "ALIPAY_APP_PRIVATE_KEY": "x"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALIPAY_APP_ID", ""),
        ("ALIPAY_APP_ID", "2021o00123456789"),
        ("ALIPAY_APP_PRIVATE_KEY", ""),
        ("ALIPAY_APP_PRIVATE_KEY", PRIVATE_BODY),  # the base64 without its PEM frame
        ("ALIPAY_APP_PRIVATE_KEY", APP_PUBLIC),  # a public key where the private one belongs
        ("ALIPAY_APP_PRIVATE_KEY", APP_PRIVATE[:-80] + "\n-----END PRIVATE KEY-----\n"),  # cut short
        ("ALIPAY_PUBLIC_KEY", ""),
        ("ALIPAY_PUBLIC_KEY", APP_PRIVATE),  # a private key where Alipay's public key belongs
        ("ALIPAY_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nnot-a-key\n-----END PUBLIC KEY-----"),
        ("ALIPAY_GATEWAY_URL", "http://openapi.alipay.com/gateway.do"),
        ("ALIPAY_GATEWAY_URL", "openapi.alipay.com/gateway.do"),
        ("ALIPAY_GATEWAY_URL", ""),
    ],
)
def test_refuses_missing_or_malformed_alipay_settings(name, value):
    result = load_production_settings(**{**ALIPAY, name: value})
    assert_refused(result, name)
    for line in APP_PRIVATE.strip().splitlines()[1:-1]:
        assert line not in result.stderr


def test_refuses_a_missing_variable_as_well():
    variables = {k: v for k, v in ALIPAY.items() if k != "ALIPAY_PUBLIC_KEY"}
    assert_refused(load_production_settings(**variables), "ALIPAY_PUBLIC_KEY")
