"""Encryption at rest and fingerprints for card key secrets.

Secrets are encrypted with MultiFernet over CARDKEY_ENCRYPTION_KEYS (the first
key encrypts, every key decrypts, so keys can be rotated), never with
SECRET_KEY. Duplicates are found through an HMAC of the normalised secret, so
no plaintext is needed to compare keys.
"""

import hashlib
import hmac
import unicodedata
from collections.abc import Callable
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    # Cached: building Fernet objects per secret would dominate a large import.
    if not keys:
        raise ImproperlyConfigured("CARDKEY_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(key.encode("ascii")) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"CARDKEY_ENCRYPTION_KEYS holds an invalid Fernet key: {exc}") from None


@cache
def _first_fernet_for(keys: tuple[str, ...]) -> Fernet:
    _fernet_for(keys)  # validates the whole list first
    return Fernet(keys[0].encode("ascii"))


def cardkey_fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.CARDKEY_ENCRYPTION_KEYS))


def encrypt_secret(secret: str) -> str:
    return cardkey_fernet().encrypt(secret.encode("utf-8")).decode("ascii")


def secret_encrypter() -> Callable[[str], str]:
    """encrypt_secret with the settings resolved once, for loops over many keys."""
    encrypt = cardkey_fernet().encrypt
    return lambda secret: encrypt(secret.encode("utf-8")).decode("ascii")


def decrypt_secret(token: str) -> str:
    return cardkey_fernet().decrypt(token.encode("ascii")).decode("utf-8")


def reencrypt_secret(token: str) -> str:
    """The same secret under the current first key (MultiFernet.rotate).
    Raises cryptography.fernet.InvalidToken if no configured key opens it."""
    return cardkey_fernet().rotate(token.encode("ascii")).decode("ascii")


def is_current_token(token: str) -> bool:
    """Whether the first (encrypting) key opens this token, so it needs no rotation."""
    try:
        _first_fernet_for(tuple(settings.CARDKEY_ENCRYPTION_KEYS)).decrypt(token.encode("ascii"))
    except InvalidToken:
        return False
    return True


def normalise_secret(secret: str) -> str:
    # NFKC folds full-width characters that merchants paste from Chinese
    # spreadsheets into their ASCII forms, so "ＡＢＣ" and "ABC" are one key.
    return unicodedata.normalize("NFKC", secret).strip()


@cache
def _fingerprint_hmac(key: str):
    # Keyed once; each fingerprint copies this state instead of re-keying,
    # which is markedly faster on a million-line import.
    return hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)


def fingerprinter() -> Callable[[str], bytes]:
    """A function giving the raw HMAC-SHA256 (32 bytes) of a normalised secret,
    with the settings resolved once, for loops over many keys."""
    keyed = _fingerprint_hmac(settings.CARDKEY_FINGERPRINT_KEY)

    def digest(secret: str) -> bytes:
        mac = keyed.copy()
        mac.update(normalise_secret(secret).encode("utf-8"))
        return mac.digest()

    return digest


def fingerprint_secret(secret: str) -> str:
    """What the `fingerprint` column holds: the HMAC in hex."""
    return fingerprinter()(secret).hex()


def mask_secret(secret: str) -> str:
    """What admin pages and logs may show: the first 4 characters, then ****.
    Never more than half of the key, so a short key is not shown whole."""
    return secret[: min(4, len(secret) // 2)] + "****"
