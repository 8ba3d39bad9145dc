"""Print where the settings expect MariaDB, Redis and the Celery broker (RabbitMQ
or a Redis database), as shell assignments for scripts/ensure_services.sh.

The addresses come from the settings themselves (environment, then .env, then
the defaults in base.py), so the script checks the servers the shop will use.
"""

import shlex
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cardshop.broker import broker_vhost  # noqa: E402
from cardshop.settings import base  # noqa: E402


def emit(name: str, value) -> None:
    print(f"{name}={shlex.quote(str(value))}")


database = base.DATABASES["default"]
emit("DB_HOST", database["HOST"] or "localhost")
emit("DB_PORT", database["PORT"] or 3306)
emit("DB_USER", database["USER"])
emit("DB_PASSWORD", database["PASSWORD"])
emit("DB_NAME", database["NAME"])
for prefix, url in (("REDIS", base.REDIS_URL), ("BROKER", base.CELERY_BROKER_URL)):
    parts = urlsplit(url)
    emit(f"{prefix}_URL", url)
    emit(f"{prefix}_SCHEME", parts.scheme)
    emit(f"{prefix}_HOST", parts.hostname or "127.0.0.1")
    emit(f"{prefix}_PORT", parts.port or (6379 if parts.scheme.startswith("redis") else 5672))
broker = urlsplit(base.CELERY_BROKER_URL)
emit("BROKER_USER", unquote(broker.username or "guest"))
emit("BROKER_PASSWORD", unquote(broker.password or "guest"))
emit("BROKER_VHOST", broker_vhost(base.CELERY_BROKER_URL))
