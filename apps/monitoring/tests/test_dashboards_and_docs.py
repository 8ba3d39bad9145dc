"""The Grafana dashboard and the alerts read metrics the shop really exports,
and docs/metrics.md documents each of them."""

import json
import re
from pathlib import Path

import pytest

from apps.orders.tests.support import product_with_keys

from .sale import samples

ROOT = Path(__file__).resolve().parents[3]
NAME = re.compile(r"\b(cardshop_[a-z_]+|django_http_[a-z_]+)")
# Histogram and counter series carry a suffix the family name does not.
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _names_in_grafana() -> set[str]:
    dashboard = json.loads((ROOT / "deploy/grafana/cardshop.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 15
    return {name for expr in exprs for name in NAME.findall(expr)}


def _names_in_alerts() -> set[str]:
    return set(NAME.findall((ROOT / "deploy/prometheus/alerts.yml").read_text()))


@pytest.mark.django_db
def test_every_metric_the_dashboard_and_alerts_read_is_exported(client):
    from apps.core import metrics

    product_with_keys(keys=1)
    client.get("/healthz")  # one request through django-prometheus
    # A labelled family shows once it has a sample: record one of each.
    metrics.celery_task_finished(task="apps.test.task", state="success")
    metrics.payment_notification(provider="sandbox", outcome="accepted")
    metrics.rate_limit_refused(group="lookup-ip")
    # The replica's gauges exist once a check ran (none without a replica).
    metrics.replica_checked(reason="ok", lag_seconds=0.0)
    exported = set(samples(client.get("/metrics").content.decode()))
    exported_names = {name for name, _labels in exported}
    for name in sorted(_names_in_grafana() | _names_in_alerts()):
        assert name in exported_names or _family(name) in {_family(n) for n in exported_names}, name


def test_every_shop_metric_is_documented():
    doc = (ROOT / "docs/metrics.md").read_text()
    for name in sorted(_names_in_grafana() | _names_in_alerts()):
        if name.startswith("cardshop_"):
            assert _family(name) in doc, f"{name} is not in docs/metrics.md"
