from django_redis import get_redis_connection


def stock_redis():
    """The Redis client of the stock gate (the shared django-redis pool)."""
    return get_redis_connection("default")


def redis_text(value) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
