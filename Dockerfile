# syntax=docker/dockerfile:1
# One image for every cardshop process: gunicorn (the default command), the
# Celery worker (celery_worker/worker.sh) and Celery beat (celery_worker/beat.sh).
# It runs cardshop.settings.production, which refuses to start without real
# DJANGO_SECRET_KEY, CARDKEY_ENCRYPTION_KEYS and CARDKEY_FINGERPRINT_KEY.

# --- build: compile mysqlclient, translations and static files
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc pkg-config libmariadb-dev gettext \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
WORKDIR /app
COPY . .
# These steps need settings but no secret and no server: the base settings with
# their development defaults are enough, and nothing of them ends up in the image.
RUN DJANGO_SETTINGS_MODULE=cardshop.settings.base python manage.py compilemessages -v 0 \
 && DJANGO_SETTINGS_MODULE=cardshop.settings.base STATIC_ROOT=/app/var/staticfiles \
    python manage.py collectstatic --noinput -v 0

# --- runtime: no compiler, a non-root user
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --user-group --uid 10001 --home-dir /app cardshop
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=cardshop:cardshop /app /app
# MEDIA_ROOT (uploaded product images, the logo): a volume mounted here starts
# with this directory's owner, so the app may write to it.
RUN mkdir -p /app/var/media && chown cardshop:cardshop /app/var/media
ENV PATH=/opt/venv/bin:$PATH \
    PYTHON=/opt/venv/bin/python \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=cardshop.settings.production \
    STATIC_ROOT=/app/var/staticfiles \
    PROMETHEUS_MULTIPROC_DIR=/tmp/cardshop-metrics
WORKDIR /app
USER cardshop
# 8000: the site and /metrics; 9808: a Celery worker's metrics (WORKER_METRICS_PORT).
EXPOSE 8000 9808
# Liveness only: /readyz (database, Redis, broker) is for the orchestrator's
# readiness probe, so a database outage does not restart every web container.
# The probe sends Host 127.0.0.1: keep it in DJANGO_ALLOWED_HOSTS.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
# WEB_CONCURRENCY (read by gunicorn) sets the number of web workers.
CMD ["gunicorn", "cardshop.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-", \
     "--graceful-timeout", "20", "--no-control-socket"]
