import pytest
from django.test import override_settings

from apps.core import health
from testing.processes import free_port


def closed_port_url(scheme="redis") -> str:
    """A URL on a local port that nothing listens on."""
    return f"{scheme}://127.0.0.1:{free_port()}/0"


def test_healthz_answers_without_touching_the_database(client):
    # No django_db mark: a database query here would raise.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_is_200_and_names_every_check_when_all_servers_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "gate_redis": "ok", "broker": "ok", "stock_warmed": "ok"},
    }


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_unreachable(client):
    with override_settings(REDIS_URL=closed_port_url()):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"].startswith("error: ")
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] == "ok"


@pytest.mark.django_db
def test_readyz_is_503_when_the_gate_redis_is_unreachable(client):
    with override_settings(GATE_REDIS_URL=closed_port_url()):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["gate_redis"].startswith("error: ")
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_unreachable(client):
    with override_settings(CELERY_BROKER_URL=closed_port_url()):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error: ")
    assert response.json()["checks"]["redis"] == "ok"


def test_readyz_is_503_when_the_database_is_unreachable(client):
    # Without django_db access pytest-django refuses every query, which is
    # exactly what an unreachable database looks like to the check.
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("error: ")


@pytest.mark.django_db
def test_a_check_appended_to_the_list_is_run_and_reported(client, monkeypatch):
    def check_stock_warmed():
        raise RuntimeError("stock not warmed")

    monkeypatch.setattr(health, "READINESS_CHECKS", [*health.READINESS_CHECKS, ("stock", check_stock_warmed)])
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["stock"] == "error: RuntimeError"
    assert response.json()["checks"]["database"] == "ok"
