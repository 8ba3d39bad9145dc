"""MariaDB named locks (GET_LOCK): fences between processes that outlive Redis.

A named lock belongs to the database session, so it is released when the
holder's connection ends, also when its process is killed."""

from contextlib import contextmanager

from django.db import connection


def _lock_name(name: str) -> str:
    # Named locks are server-wide; the database name keeps environments apart.
    return f"{connection.settings_dict['NAME']}:{name}"[:64]


@contextmanager
def named_lock(name: str, *, timeout: float):
    """Yield True holding the lock, or False if it was not had within `timeout`."""
    full = _lock_name(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, %s)", [full, timeout])
        acquired = cursor.fetchone()[0] == 1
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT RELEASE_LOCK(%s)", [full])


def persist_fence(*, product_id: int, timeout: float):
    """Held while a product's queued reservations move into MariaDB, and while
    its stock is rebuilt from MariaDB, so a rebuild never misses a batch that
    was read from Redis before Redis lost its data."""
    return named_lock(f"persist:{product_id}", timeout=timeout)
