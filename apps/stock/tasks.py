from celery import shared_task
from redis.exceptions import RedisError

from .overload import overload_check
from .warmup import WarmBlocked, gates_check_redis_restart, products_to_warm, stock_warm


@shared_task(acks_late=True, reject_on_worker_lost=True)
def warm_stock_task():
    """Warm products before their sale, and rebuild any gate Redis lost (or
    kept from before a restart, when it may lag MariaDB)."""
    warmed, failed = 0, False
    try:
        gates_check_redis_restart()
        for product in products_to_warm():
            try:
                rebuilt, _ = stock_warm(product=product)
            except WarmBlocked:
                continue  # the next run gets it
            except RedisError:
                # Its gate master is down (on a cluster): the products on the
                # others are warmed all the same; this one on a later run.
                failed = True
                continue
            warmed += rebuilt
    except RedisError:
        return -1
    return -1 if failed else warmed


@shared_task(acks_late=True, reject_on_worker_lost=True)
def overload_check_task():
    """Pause checkout store-wide while the workers' backlog is too deep (apps.stock.overload)."""
    try:
        return overload_check()
    except RedisError:
        return None  # checkout is paused anyway while Redis is unreachable
