"""The one place that locks card key rows. Orders claim keys here, by id order."""
from django.db import connection, models
from django.db.models import Case, Value, When
from django.utils import timezone

from .models import CardKey


def cardkeys_claim(*, product_id: int, count: int) -> list[int]:
    """Lock up to `count` available keys of a product, skipping rows another
    transaction holds, lowest ids first. Caller holds a transaction (the locks
    last until it ends) and must mark them sold in it."""
    assert connection.in_atomic_block, "cardkeys_claim needs the caller's transaction"
    if count <= 0:
        return []
    return list(
        CardKey.objects.select_for_update(skip_locked=True)
        .filter(product_id=product_id, status=CardKey.Status.AVAILABLE)
        .order_by("id")
        .values_list("id", flat=True)[:count]
    )


def cardkeys_mark_sold(*, assignments: dict[int, list[int]]) -> int:
    """Mark claimed keys sold, each to its order ({order_id: [key ids]}), in one
    statement. Caller holds the rows' locks from cardkeys_claim. The status
    condition is a second guard: a key that is not available is never re-sold.
    Returns how many keys changed."""
    key_ids = [key_id for ids in assignments.values() for key_id in ids]
    if not key_ids:
        return 0
    order_of_key = Case(
        *(When(id__in=ids, then=Value(order_id)) for order_id, ids in assignments.items() if ids),
        output_field=models.BigIntegerField(),
    )
    return CardKey.objects.filter(id__in=key_ids, status=CardKey.Status.AVAILABLE).update(
        status=CardKey.Status.SOLD, order_id=order_of_key, sold_at=timezone.now()
    )
