"""Reads of the key pool."""

from .models import CardKey


def order_keys_reveal(*, order_id: int) -> list[str]:
    """The plaintext keys of a delivered order, for its buyer only. Callers
    have checked the buyer's access; never log the result."""
    tokens = CardKey.objects.filter(order_id=order_id, status=CardKey.Status.SOLD).order_by("id")
    return [key.secret for key in tokens.only("id", "secret_encrypted")]
