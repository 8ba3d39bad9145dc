from django_redis import get_redis_connection


def stock_redis():
    """The Redis client of the stock gate (the shared django-redis pool)."""
    return get_redis_connection("default")
