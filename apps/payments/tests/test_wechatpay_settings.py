"""Production refuses to start with wechatpay enabled and its credentials
missing or malformed, and says which variable without echoing its value. Each
case loads the settings in a fresh interpreter (tests/test_production_settings.py)."""

import pytest

from tests.test_production_settings import REAL, assert_refused, load_production_settings

from .fake_wechatpay import FakeWechatPay

_fake = FakeWechatPay()
WECHAT = {
    **REAL,
    "PAYMENT_PROVIDERS": "wechatpay",
    **_fake.settings(),
    "WECHATPAY_API_BASE": "https://api.mch.weixin.qq.com",
}
SECRET_LINE = _fake.merchant_private_pem.splitlines()[1]


def test_starts_with_wechatpay_configured():
    result = load_production_settings(**WECHAT)
    assert result.returncode == 0, result.stderr


def test_a_pem_on_one_line_with_escaped_newlines_is_read():
    one_line = _fake.merchant_private_pem.replace("\n", "\\n")
    result = load_production_settings(**{**WECHAT, "WECHATPAY_PRIVATE_KEY": one_line})
    assert result.returncode == 0, result.stderr


def test_wechatpay_credentials_are_not_needed_while_wechatpay_is_off():
    result = load_production_settings(**{**REAL, "WECHATPAY_MCHID": "", "WECHATPAY_PRIVATE_KEY": "x"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WECHATPAY_MCHID", ""),
        ("WECHATPAY_MCHID", "19000o9191"),
        ("WECHATPAY_APPID", ""),
        ("WECHATPAY_API_V3_KEY", ""),
        ("WECHATPAY_API_V3_KEY", "k" * 31),
        ("WECHATPAY_API_V3_KEY", "k" * 33),
        ("WECHATPAY_PRIVATE_KEY", ""),
        ("WECHATPAY_PRIVATE_KEY", _fake.merchant_private_pem.replace(SECRET_LINE, SECRET_LINE[::-1])),
        ("WECHATPAY_PRIVATE_KEY", _fake.platform_public_pem),
        ("WECHATPAY_CERT_SERIAL", ""),
        ("WECHATPAY_CERT_SERIAL", "not-hex!"),
        ("WECHATPAY_PUBLIC_KEY", ""),
        ("WECHATPAY_PUBLIC_KEY", _fake.merchant_private_pem),
        ("WECHATPAY_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
        ("WECHATPAY_PUBLIC_KEY_ID", ""),
        ("WECHATPAY_API_BASE", "http://api.mch.weixin.qq.com"),
        ("WECHATPAY_API_BASE", "api.mch.weixin.qq.com"),
    ],
)
def test_refuses_missing_or_malformed_wechatpay_settings(name, value):
    result = load_production_settings(**{**WECHAT, name: value})
    assert_refused(result, name)
    assert WECHAT["WECHATPAY_API_V3_KEY"] not in result.stderr
    assert SECRET_LINE not in result.stderr and SECRET_LINE[::-1] not in result.stderr


def test_refuses_a_missing_variable_as_well():
    variables = {k: v for k, v in WECHAT.items() if k != "WECHATPAY_API_V3_KEY"}
    assert_refused(load_production_settings(**variables), "WECHATPAY_API_V3_KEY")
