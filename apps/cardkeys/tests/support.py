"""Helpers for the card key tests."""

import io

from apps.cardkeys.models import CardKey
from apps.cardkeys.services import cardkeys_import


def run_import(product, data: bytes, file_name: str = "keys.txt", **kwargs):
    return cardkeys_import(product=product, source=io.BytesIO(data), file_name=file_name, **kwargs)


def stored_secrets(product) -> list[str]:
    return [key.secret for key in CardKey.objects.filter(product=product).order_by("id")]
