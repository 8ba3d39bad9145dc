"""Celery beat schedule: the periodic jobs of the shop, in one place."""

from celery.schedules import schedule

BEAT_SCHEDULE = {
    # Queued reservations become orders within about a second.
    "persist-reservations": {
        "task": "apps.orders.tasks.persist_reservations_task",
        "schedule": schedule(1.0),
        "options": {"expires": 5},
    },
    "expire-reservations": {"task": "apps.orders.tasks.expire_reservations_task", "schedule": schedule(15.0)},
    # Asks the providers about unpaid orders with a started payment before they expire.
    "query-expiring-payments": {
        "task": "apps.orders.tasks.payments_query_expiring_task",
        "schedule": schedule(10.0),
        "options": {"expires": 30},
    },
    # Warms products before a sale and rebuilds a gate Redis lost; a no-op otherwise.
    "warm-stock": {"task": "apps.stock.tasks.warm_stock_task", "schedule": schedule(5.0)},
    # Pauses checkout while the fulfilment or persistence backlog is too deep, and reopens it.
    # It waits in the queue it measures, behind fewer messages than the limit
    # while under it, so it is late by at most the limit's worth of work: keep it a minute.
    "overload-check": {
        "task": "apps.stock.tasks.overload_check_task",
        "schedule": schedule(2.0),
        "options": {"expires": 60},
    },
    "reconcile": {"task": "apps.orders.tasks.reconcile_task", "schedule": schedule(60.0)},
    # Fails admin import jobs nobody will finish (upload cut off, worker and message lost)
    # and deletes their staged uploads.
    "reap-import-jobs": {"task": "apps.cardkeys.tasks.reap_import_jobs_task", "schedule": schedule(300.0)},
    # Low stock of products nobody bought from lately (voided keys, a lowered threshold),
    # and re-arming the alerts of restocked ones; fulfilment checks its own products at once.
    "low-stock-check": {
        "task": "apps.notifications.tasks.stock_low_check_task",
        "schedule": schedule(60.0),
        "options": {"expires": 120},
    },
}
