"""Production insists: no default secret key, no default encryption keys."""
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import (
    INSECURE_DEV_ENCRYPTION_KEY,
    INSECURE_DEV_FINGERPRINT_KEY,
    INSECURE_DEV_SECRET_KEY,
)
from cardshop.env import env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
CARDKEY_ENCRYPTION_KEYS = env.list("CARDKEY_ENCRYPTION_KEYS")
CARDKEY_FINGERPRINT_KEY = env("CARDKEY_FINGERPRINT_KEY")

if SECRET_KEY == INSECURE_DEV_SECRET_KEY or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be a real secret of at least 32 characters.")
if not CARDKEY_ENCRYPTION_KEYS or INSECURE_DEV_ENCRYPTION_KEY in CARDKEY_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("CARDKEY_ENCRYPTION_KEYS must hold real Fernet keys, not the development key.")
if CARDKEY_FINGERPRINT_KEY == INSECURE_DEV_FINGERPRINT_KEY or len(CARDKEY_FINGERPRINT_KEY) < 32:
    raise ImproperlyConfigured("CARDKEY_FINGERPRINT_KEY must be a real secret of at least 32 characters.")

SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
