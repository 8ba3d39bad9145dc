"""Production insists: no default secret key, no default encryption keys.

Each check raises ImproperlyConfigured naming the variable, so a deployment
with a missing or placeholder secret never starts serving (and never encrypts
card keys with a key everyone can read in this repository).
"""

import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from django.core.exceptions import ImproperlyConfigured

from cardshop.env import env

from .base import *  # noqa: F403
from .base import (
    INSECURE_DEV_ENCRYPTION_KEY,
    INSECURE_DEV_FINGERPRINT_KEY,
    INSECURE_DEV_SANDBOX_PAYMENT_SECRET,
    INSECURE_DEV_SECRET_KEY,
)


def _required(name: str) -> str:
    value = env(name, default="").strip()
    if not value:
        raise ImproperlyConfigured(f"{name} is not set; production needs a real value (see .env.example).")
    return value


DEBUG = False
SECRET_KEY = _required("DJANGO_SECRET_KEY")
CARDKEY_ENCRYPTION_KEYS = [key.strip() for key in _required("CARDKEY_ENCRYPTION_KEYS").split(",") if key.strip()]
CARDKEY_FINGERPRINT_KEY = _required("CARDKEY_FINGERPRINT_KEY")

if SECRET_KEY == INSECURE_DEV_SECRET_KEY or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be a real secret of at least 32 characters.")
if INSECURE_DEV_ENCRYPTION_KEY in CARDKEY_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("CARDKEY_ENCRYPTION_KEYS must hold real Fernet keys, not the development key.")
for _position, _key in enumerate(CARDKEY_ENCRYPTION_KEYS, start=1):
    try:
        Fernet(_key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        # The key itself stays out of the message: it may be a real secret with a typo.
        raise ImproperlyConfigured(
            f"CARDKEY_ENCRYPTION_KEYS key #{_position} is not a valid Fernet key "
            "(32 url-safe base64-encoded bytes; see .env.example for how to generate one)."
        ) from None
if CARDKEY_FINGERPRINT_KEY == INSECURE_DEV_FINGERPRINT_KEY or len(CARDKEY_FINGERPRINT_KEY) < 32:
    raise ImproperlyConfigured("CARDKEY_FINGERPRINT_KEY must be a real secret of at least 32 characters.")
# Empty derives the order token key from the fingerprint key; a value of its own must be as strong.
if ORDER_TOKEN_KEY and len(ORDER_TOKEN_KEY) < 32:  # noqa: F405
    raise ImproperlyConfigured("ORDER_TOKEN_KEY must be empty or a real secret of at least 32 characters.")

# The sandbox provider pays without money: a production shop that offers it
# gives keys away. Only an explicit demo deployment may keep it.
if "sandbox" in PAYMENT_PROVIDERS:  # noqa: F405
    if not env.bool("ALLOW_SANDBOX_PAYMENTS", default=False):
        raise ImproperlyConfigured(
            "PAYMENT_PROVIDERS includes 'sandbox', which pays without money. Remove it, or set "
            "ALLOW_SANDBOX_PAYMENTS=true for a demo deployment."
        )
    if SANDBOX_PAYMENT_SECRET == INSECURE_DEV_SANDBOX_PAYMENT_SECRET or len(SANDBOX_PAYMENT_SECRET) < 32:  # noqa: F405
        raise ImproperlyConfigured("SANDBOX_PAYMENT_SECRET must be a real secret of at least 32 characters.")

# Stripe: a key of the right kind, never echoed (a typo'd real key is still a secret).
if "stripe" in PAYMENT_PROVIDERS:  # noqa: F405
    if not STRIPE_SECRET_KEY.startswith(("sk_live_", "sk_test_", "rk_live_", "rk_test_")):  # noqa: F405
        raise ImproperlyConfigured(
            "STRIPE_SECRET_KEY is missing or malformed: PAYMENT_PROVIDERS lists stripe, which needs "
            "a secret key starting sk_live_, sk_test_ or rk_ (see .env.example)."
        )
    if not STRIPE_WEBHOOK_SECRET.startswith("whsec_") or len(STRIPE_WEBHOOK_SECRET) < 16:  # noqa: F405
        raise ImproperlyConfigured(
            "STRIPE_WEBHOOK_SECRET is missing or malformed: it is the webhook endpoint's signing secret, "
            "starting whsec_ (see docs/payments.md)."
        )
    if not STRIPE_API_BASE.startswith("https://"):  # noqa: F405
        raise ImproperlyConfigured("STRIPE_API_BASE must be an https:// address (https://api.stripe.com).")

# 易支付 (epay): a gateway reached over https, a numeric merchant id and a key.
# The messages name the variable, never its value.
if "epay" in PAYMENT_PROVIDERS:  # noqa: F405
    if not re.fullmatch(r"https://[^\s/?#]+(/[^\s?#]*)?", EPAY_GATEWAY_URL.strip()):  # noqa: F405
        raise ImproperlyConfigured("EPAY_GATEWAY_URL must be the epay gateway's https:// URL (see .env.example).")
    if not re.fullmatch(r"[0-9]+", EPAY_PID.strip()):  # noqa: F405
        raise ImproperlyConfigured("EPAY_PID must be the epay merchant id (digits; see .env.example).")
    if not EPAY_KEY.strip():  # noqa: F405
        raise ImproperlyConfigured("EPAY_KEY is not set; epay signs with the merchant key (see .env.example).")


def _rsa_key_loads(pem: str, *, private: bool) -> bool:
    """Whether `pem` is an RSA key (private or public) in PEM. Never raises,
    so no parser message (which might quote the key) reaches the error."""
    try:
        data = pem.strip().encode("ascii")
        key = load_pem_private_key(data, password=None) if private else load_pem_public_key(data)
    except (ValueError, TypeError, UnicodeError, UnsupportedAlgorithm):
        return False
    return isinstance(key, rsa.RSAPrivateKey if private else rsa.RSAPublicKey)


if "alipay" in PAYMENT_PROVIDERS:  # noqa: F405
    if not re.fullmatch(r"[0-9]{8,32}", ALIPAY_APP_ID.strip()):  # noqa: F405
        raise ImproperlyConfigured("ALIPAY_APP_ID must be the Alipay app's id (APPID, digits; see .env.example).")
    if not _rsa_key_loads(ALIPAY_APP_PRIVATE_KEY, private=True):  # noqa: F405
        raise ImproperlyConfigured(
            "ALIPAY_APP_PRIVATE_KEY is missing or malformed: it must be the app's RSA private key in PEM "
            "(see .env.example)."
        )
    if not _rsa_key_loads(ALIPAY_PUBLIC_KEY, private=False):  # noqa: F405
        raise ImproperlyConfigured(
            "ALIPAY_PUBLIC_KEY is missing or malformed: it must be Alipay's RSA public key in PEM (see .env.example)."
        )
    if not re.fullmatch(r"https://[^\s/?#]+(/[^\s?#]*)?", ALIPAY_GATEWAY_URL.strip()):  # noqa: F405
        raise ImproperlyConfigured(
            "ALIPAY_GATEWAY_URL must be an https:// address (https://openapi.alipay.com/gateway.do)."
        )

# WeChat Pay: keys that load (the SDK wants PKCS#8 "BEGIN PRIVATE KEY" and a
# "BEGIN PUBLIC KEY"), a 32-character APIv3 key, an https API. The messages
# name the variable, never its value (nor cryptography's error, which may quote it).
if "wechatpay" in PAYMENT_PROVIDERS:  # noqa: F405
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    if not re.fullmatch(r"[0-9]{6,32}", WECHATPAY_MCHID.strip()):  # noqa: F405
        raise ImproperlyConfigured("WECHATPAY_MCHID must be the WeChat Pay merchant id (digits; see .env.example).")
    if not re.fullmatch(r"[A-Za-z0-9_]{6,64}", WECHATPAY_APPID.strip()):  # noqa: F405
        raise ImproperlyConfigured("WECHATPAY_APPID must be the AppID bound to the merchant id (see .env.example).")
    if not re.fullmatch(r"[\x21-\x7e]{32}", WECHATPAY_API_V3_KEY):  # noqa: F405
        raise ImproperlyConfigured("WECHATPAY_API_V3_KEY must be the 32-character APIv3 key (see .env.example).")
    try:
        _wechat_private = load_pem_private_key(WECHATPAY_PRIVATE_KEY.strip().encode(), password=None)  # noqa: F405
    except (ValueError, TypeError, UnicodeEncodeError):
        _wechat_private = None
    if (
        not isinstance(_wechat_private, rsa.RSAPrivateKey) or "-----BEGIN PRIVATE KEY-----" not in WECHATPAY_PRIVATE_KEY  # noqa: F405
    ):
        raise ImproperlyConfigured(
            "WECHATPAY_PRIVATE_KEY must be the merchant's RSA API private key in PEM "
            '("BEGIN PRIVATE KEY", apiclient_key.pem; see .env.example).'
        )
    if not re.fullmatch(r"[0-9A-Fa-f]{8,64}", WECHATPAY_CERT_SERIAL.strip()):  # noqa: F405
        raise ImproperlyConfigured("WECHATPAY_CERT_SERIAL must be the merchant API certificate's serial (hex).")
    try:
        _wechat_public = load_pem_public_key(WECHATPAY_PUBLIC_KEY.strip().encode())  # noqa: F405
    except (ValueError, TypeError, UnicodeEncodeError):
        _wechat_public = None
    if not isinstance(_wechat_public, rsa.RSAPublicKey):
        raise ImproperlyConfigured(
            'WECHATPAY_PUBLIC_KEY must be WeChat Pay\'s RSA public key in PEM ("BEGIN PUBLIC KEY"; see .env.example).'
        )
    if not WECHATPAY_PUBLIC_KEY_ID.strip():  # noqa: F405
        raise ImproperlyConfigured(
            "WECHATPAY_PUBLIC_KEY_ID must be the id of WeChat Pay's public key (PUB_KEY_ID_...)."
        )
    if not re.fullmatch(r"https://[^\s/?#]+/?", WECHATPAY_API_BASE.strip()):  # noqa: F405
        raise ImproperlyConfigured("WECHATPAY_API_BASE must be an https:// address (https://api.mch.weixin.qq.com).")

# The delivery email carries the buyer's keys: a backend that prints or files
# mail would write plaintext keys to logs or disk.
if EMAIL_BACKEND in (  # noqa: F405
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
):
    raise ImproperlyConfigured(
        "EMAIL_BACKEND prints or files mail, and delivery mails carry plaintext keys: "
        "use django.core.mail.backends.smtp.EmailBackend (or another real transport)."
    )

SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)

# HTTPS only. A plain-HTTP request is redirected, except the probes' and
# Prometheus' (they speak plain HTTP to the process itself). The compose demo
# on plain HTTP turns the redirect off, as it does the Secure cookies.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# HSTS, sent on HTTPS answers only. A year with subdomains and preload is what
# browsers' preload lists want; a first deployment may start with less.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 60 * 60)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# Behind our proxy (it terminates TLS and says so in X-Forwarded-Proto, see
# deploy/nginx/cardshop.conf) that header tells HTTPS from HTTP. Reached
# directly, a client could send the header itself: then only a TLS connection
# to this process counts.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY_IP_HEADER else None  # noqa: F405

# Staff sign in to the admin with a TOTP code as well (manage.py enrol_admin);
# no variable turns that off here.
ADMIN_REQUIRE_OTP = True
