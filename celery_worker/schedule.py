"""Celery beat schedule: the periodic jobs of the shop, in one place."""

# Tasks are added here by the issues that introduce them (expiry, reconciliation,
# warm-up before a sale). Each entry names a task by its dotted path.
BEAT_SCHEDULE: dict = {}
