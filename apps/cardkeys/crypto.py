"""Encryption at rest and fingerprints for card key secrets.

Secrets are encrypted with MultiFernet over CARDKEY_ENCRYPTION_KEYS (the first
key encrypts, every key decrypts, so keys can be rotated), never with
SECRET_KEY. Duplicates are found through an HMAC of the normalised secret, so
no plaintext is needed to compare keys.
"""
import hashlib
import hmac
import unicodedata
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@lru_cache(maxsize=None)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("CARDKEY_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(key.encode("ascii")) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"CARDKEY_ENCRYPTION_KEYS holds an invalid Fernet key: {exc}") from None


def cardkey_fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.CARDKEY_ENCRYPTION_KEYS))


def encrypt_secret(secret: str) -> str:
    return cardkey_fernet().encrypt(secret.encode("utf-8")).decode("ascii")


def decrypt_secret(token: str) -> str:
    return cardkey_fernet().decrypt(token.encode("ascii")).decode("utf-8")


def reencrypt_secret(token: str) -> str:
    """The same secret under the current first key (MultiFernet.rotate)."""
    return cardkey_fernet().rotate(token.encode("ascii")).decode("ascii")


def normalise_secret(secret: str) -> str:
    # NFKC folds full-width characters that merchants paste from Chinese
    # spreadsheets into their ASCII forms, so "ＡＢＣ" and "ABC" are one key.
    return unicodedata.normalize("NFKC", secret).strip()


def fingerprint_secret(secret: str) -> str:
    key = settings.CARDKEY_FINGERPRINT_KEY.encode("utf-8")
    return hmac.new(key, normalise_secret(secret).encode("utf-8"), hashlib.sha256).hexdigest()


def mask_secret(secret: str) -> str:
    """What admin pages and logs may show: the first 4 characters, then ****."""
    return secret[:4] + "****"
