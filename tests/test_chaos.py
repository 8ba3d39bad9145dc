"""A bounded run of the chaos suite (python -m chaos, what `make chaos` runs):
a worker SIGKILLed mid-drain, the gate Redis lost mid-sale and MariaDB
connections killed mid-webhook, at a small size, against real gunicorn,
Celery worker and beat and a private redis-server on the suite's database,
its own Redis prefix and its own RabbitMQ virtual host. Every invariant must
hold and the shop must recover without a person.

The worker SIGKILL recovers in seconds on RabbitMQ, which hands the killed
worker's unacknowledged task back the moment its connection drops (on the
Redis broker it waited for reconcile's re-drive, one to two minutes).
`make chaos` runs every fault."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

from chaos.faults import FAULTS

ROOT = Path(__file__).resolve().parent.parent
FAULTS_RUN = ("worker-kill", "redis-loss", "db-kill-webhook")
# A worker SIGKILL on RabbitMQ: the new worker's start and the drain's rest,
# not a visibility timeout or reconcile's re-drive (60 s and more).
WORKER_KILL_RECOVERY_BOUND = 40


def test_each_fault_is_registered_once_with_a_name_and_a_title():
    names = [fault.name for fault in FAULTS]
    assert len(names) == len(set(names))
    assert all(fault.name and fault.title for fault in FAULTS)
    for expected in ("worker-kill", "redis-loss", "redis-crash-durable", "rabbitmq-restart", "db-kill-drain"):
        assert expected in names
    assert {"db-kill-webhook", "race"} <= set(names)


def test_make_chaos_runs_the_suite_with_its_arguments():
    dry = subprocess.run(
        ["make", "-n", "chaos", "CHAOS_ARGS=--faults race --orders 50"], cwd=ROOT, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    assert "-m chaos --faults race --orders 50" in dry.stdout


def test_an_unknown_fault_is_refused_with_the_known_ones():
    run = subprocess.run(
        [sys.executable, "-m", "chaos", "--faults", "worker-kill,meteor"], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "unknown faults: meteor" in run.stderr and "redis-loss" in run.stderr


def test_the_broker_is_a_virtual_host_of_the_run_or_a_node_of_its_own_for_the_restart(tmp_path):
    from chaos.__main__ import parse
    from chaos.stack import ChaosConfig, ChaosStack

    assert parse(["--faults", "race"]).broker == "rabbitmq"
    assert parse(["--faults", "race,rabbitmq-restart"]).broker == "private-rabbitmq"
    assert parse(["--faults", "rabbitmq-restart", "--broker", "redis"]).broker == "redis"
    urls = {}
    for broker in ("rabbitmq", "private-rabbitmq", "redis", "amqp://u:p@broker.example:5672/shop"):
        stack = ChaosStack(ChaosConfig(prefix="chaos-run/7", broker=broker))
        try:
            urls[broker] = stack.env["CELERY_BROKER_URL"]
            assert (stack.broker is not None) == (broker == "private-rabbitmq")
            if stack.broker is not None:
                assert urls[broker] == f"amqp://guest:guest@127.0.0.1:{stack.broker.port}/chaos-run%2F7"
        finally:
            stack.gate.remove()
            if stack.broker is not None:
                stack.broker.remove()
    assert urls["rabbitmq"] == "amqp://guest:guest@127.0.0.1:5672/chaos-run%2F7"
    assert urls["redis"] == "redis://127.0.0.1:6379/1"
    assert urls["amqp://u:p@broker.example:5672/shop"] == "amqp://u:p@broker.example:5672/shop"


@pytest.mark.timeout(150)
@pytest.mark.django_db(transaction=True)
def test_worker_kill_redis_loss_and_database_kills_keep_every_invariant(tmp_path):
    # The suite's own test database, migrated already (a fresh one would cost
    # its migrations), flushed by the run before and after; a prefix derived
    # from this run's, so parallel runs do not collide.
    database = connection.settings_dict["NAME"]
    prefix = settings.REDIS_KEY_PREFIX + "-chaos"
    # The run kills every connection to the database, this process's too: it
    # reconnects for the flush afterwards.
    connections.close_all()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos",
            "--faults",
            ",".join(FAULTS_RUN),
            "--orders",
            "20",
            "--timeout",
            "60",
            "--database",
            database,
            "--prefix",
            prefix,
            "--out",
            str(tmp_path),
            "--reuse-database",
            "--mail-wait",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
    )
    print("\n".join(line for line in run.stdout.splitlines() if line.startswith("[chaos]")))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    # The run's own virtual host on the local RabbitMQ, named like its prefix.
    assert result["broker"] == f"rabbitmq (amqp://127.0.0.1:5672/{prefix})", result["broker"]
    faults = {fault["fault"]: fault for fault in result["faults"]}
    assert set(faults) == set(FAULTS_RUN)
    for name, fault in faults.items():
        assert fault["status"] == "ran", (name, fault["note"])
        assert {code for code, ok in fault["checks"].items() if ok} >= {"I1", "I2", "I3", "I4", "I5"}, fault
        assert fault["passed"], fault["violations"]
        assert fault["recover_seconds"] is not None and fault["recover_seconds"] > 0
        assert fault["orders"] == 20, fault  # every key sold, none twice (I1 would fail past 20)
    assert faults["worker-kill"]["recover_seconds"] < WORKER_KILL_RECOVERY_BOUND, faults["worker-kill"]
    # Connections killed under the webhook lose no acknowledged checkout ("A"
    # is checked), and the provider's retries were answered 5xx, then 2xx.
    assert faults["db-kill-webhook"]["checks"]["A"] is True
    assert set(faults["db-kill-webhook"]["webhook_answers"]) >= {"200", "503"}, faults["db-kill-webhook"]
    # A gate lost without persistence: checkout was refused while it was
    # down, then sold again from the rebuilt stock.
    assert faults["redis-loss"]["checkout_answers"].get("503 sale_paused", 0) > 0, faults["redis-loss"]
    table = (tmp_path / "latest.md").read_text()
    assert "| MariaDB connections killed mid-webhook | 20 (20) |" in table
    assert "Redis loss without persistence mid-sale" in table
