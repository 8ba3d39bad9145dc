"""deploy/k8s, rendered as an operator would render it and checked object by object.

Each overlay is rendered with the pinned kubectl's kustomize
(scripts/ensure_kubectl.sh) from a copy of deploy/k8s whose secrets.env files
are made from their secrets.env.example with fresh, well-formed secrets, as
docs/deploy.md tells an operator to do. Every rendered object is validated
against the Kubernetes 1.32 API schemas (kubernetes-validate, strict: an
unknown field fails too); the KEDA ScaledObject, whose CRD those schemas do
not know, is checked field by field instead. The rest ties the manifests to
the code they run: the Dockerfile, the start scripts, .env.example, the
production settings and the nginx configuration.
"""

import base64
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32"
OVERLAYS = {
    "production": "overlays/production",
    "single-node": "overlays/single-node",
    "keda": "keda",
}
APP_IMAGES = {"production": "registry.example.com/cardshop:1.0.0", "single-node": "cardshop:local"}
# Variables a container sets itself that are not settings (.env.example lists
# settings only), each with the file that reads it.
PROCESS_VARIABLES = {
    "WEB_CONCURRENCY": ROOT / "Dockerfile",  # gunicorn reads it; the Dockerfile says so
    "CELERY_CONCURRENCY": ROOT / "celery_worker" / "worker.sh",
    "CELERY_BEAT_SCHEDULE_FILE": ROOT / "celery_worker" / "beat.sh",
}
# Names whose values are secrets (or URLs carrying a password): never in a ConfigMap.
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|_KEY$|_KEYS$|PRIVATE|_URL$)")
NOT_SECRET_URLS = {"SITE_URL", "STRIPE_API_BASE", "EPAY_GATEWAY_URL", "ALIPAY_GATEWAY_URL", "MEDIA_URL"}


def env_example_names() -> set[str]:
    pattern = re.compile(r"^#?([A-Z][A-Z0-9_]*)=")
    return {m.group(1) for line in (ROOT / ".env.example").read_text().splitlines() if (m := pattern.match(line))}


def env_file(path: Path) -> dict[str, str]:
    """NAME=value lines as kustomize reads them (no quoting, # comments)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def filled_secret(name: str, value: str) -> str:
    if "CHANGE-ME-FERNET" in value:
        return Fernet.generate_key().decode()
    return value.replace("CHANGE-ME", secrets.token_urlsafe(50))


def kubectl() -> str:
    done = subprocess.run(
        [str(ROOT / "scripts" / "ensure_kubectl.sh")], capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            "The pinned kubectl is missing and scripts/ensure_kubectl.sh (make k8s-tools) could not install it:\n"
            + done.stderr
        )
    return str(ROOT / done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kubectl_path() -> str:
    return kubectl()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of deploy/k8s with each overlay's secrets.env made from its example."""
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    for example in copy.glob("overlays/*/secrets.env.example"):
        lines = [f"{name}={filled_secret(name, value)}" for name, value in env_file(example).items()]
        (example.parent / "secrets.env").write_text("\n".join(lines) + "\n")
    return copy


@pytest.fixture(scope="module")
def rendered(tree, kubectl_path) -> dict[str, list[dict]]:
    out = {}
    for name, directory in OVERLAYS.items():
        done = subprocess.run(
            [kubectl_path, "kustomize", str(tree / directory)], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
        out[name] = [obj for obj in yaml.safe_load_all(done.stdout) if obj]
    return out


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def config_of(objects: list[dict], prefix: str, kind: str) -> dict[str, str]:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(prefix + "-")]
    data = obj.get("data", {})
    if kind == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in data.items()}
    return data


def environment(objects: list[dict]) -> dict[str, str]:
    return config_of(objects, "cardshop-config", "ConfigMap") | config_of(objects, "cardshop-secrets", "Secret")


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "Job")
    ]


def container(objects: list[dict], deployment: str, kind: str = "Deployment") -> dict:
    (c,) = one(objects, kind, deployment)["spec"]["template"]["spec"]["containers"]
    return c


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


APP_OVERLAYS = ["production", "single-node", "keda"]


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_every_rendered_object_is_valid_kubernetes(rendered, overlay):
    checked = set()
    for obj in rendered[overlay]:
        if obj["kind"] == "ScaledObject":
            continue  # a KEDA CRD: test_keda_scaled_object checks it
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} at {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{overlay}: {exc.message}")
        checked.add(obj["kind"])
    expected = {"Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"}
    assert expected | {"ConfigMap", "Secret", "PersistentVolumeClaim"} <= checked


def test_the_validator_rejects_what_kubernetes_would(rendered):
    """The check above can fail: a field Kubernetes does not know, or a wrong type, is refused."""
    web = json.loads(json.dumps(one(rendered["production"], "Deployment", "web")))
    web["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSION, strict=True)
    web = json.loads(json.dumps(one(rendered["production"], "Deployment", "web")))
    web["spec"]["replicas"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_web_probes_healthz_and_readyz_on_the_gunicorn_port(rendered, overlay):
    objects = rendered[overlay]
    web = container(objects, "web")
    (port,) = web["ports"]
    assert port["containerPort"] == 8000 and '--bind", "0.0.0.0:8000"' in dockerfile()
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    allowed = environment(objects)["DJANGO_ALLOWED_HOSTS"].split(",")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert web[probe]["httpGet"]["port"] == port["name"]
        (host,) = [h["value"] for h in web[probe]["httpGet"]["httpHeaders"] if h["name"] == "Host"]
        assert host in allowed, f"the probe's Host {host} is not in DJANGO_ALLOWED_HOSTS: Django would answer 400"
    # Production's HTTPS redirect must not catch the kubelet's plain-HTTP probes.
    production = (ROOT / "cardshop" / "settings" / "production.py").read_text()
    assert 'r"^healthz$"' in production and 'r"^readyz$"' in production


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_worker_probes_read_its_metrics_port_on_loopback(rendered, overlay):
    objects = rendered[overlay]
    worker = container(objects, "worker")
    env = environment(objects)
    port = int(env["WORKER_METRICS_PORT"])
    assert [p["containerPort"] for p in worker["ports"]] == [port]
    assert f"EXPOSE 8000 {port}" in dockerfile()
    assert "127.0.0.1/32" in env["METRICS_ALLOWED_NETWORKS"].split(","), "the probe asks from loopback"
    assert env["WORKER_METRICS_ADDRESS"] == "0.0.0.0", "Prometheus scrapes each worker pod from outside it"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = worker[probe]["exec"]["command"]
        assert command[:2] == ["python", "-c"]
        assert f"http://127.0.0.1:{port}/metrics" in command[2]
        assert "celery" not in " ".join(command), "no Celery start-up per probe"


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_autoscalers_target_existing_deployments_on_cpu(rendered, overlay):
    objects = rendered[overlay]
    hpas = find(objects, "HorizontalPodAutoscaler")
    scaled = {}
    for hpa in hpas:
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["apiVersion"] == "apps/v1"
        deployment = one(objects, "Deployment", ref["name"])
        low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
        assert 1 <= low <= deployment["spec"]["replicas"] <= high
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
        # Utilization is a share of the request: without a CPU request the HPA has nothing to divide by.
        assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
        scaled[ref["name"]] = hpa
    expected = {"web"} if overlay == "keda" else {"web", "worker"}
    assert set(scaled) == expected


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_beat_is_one_pod_replaced_not_rolled(rendered, overlay):
    objects = rendered[overlay]
    beat = one(objects, "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    targets = [
        o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    ]
    assert "beat" not in targets
    assert not [p for p in find(objects, "PodDisruptionBudget") if p["metadata"]["name"] == "beat"]


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_disruption_budgets_select_existing_pods(rendered, overlay):
    objects = rendered[overlay]
    templates = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in find(objects, "Deployment")
    }
    covered = set()
    for pdb in find(objects, "PodDisruptionBudget"):
        wanted = pdb["spec"]["selector"]["matchLabels"]
        matches = [name for name, labels in templates.items() if wanted.items() <= labels.items()]
        assert len(matches) == 1, f"PDB {pdb['metadata']['name']} selects {matches}"
        covered |= set(matches)
    assert {"web", "worker"} <= covered


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_services_select_existing_pods(rendered, overlay):
    objects = rendered[overlay]
    templates = [d["spec"]["template"]["metadata"]["labels"] for d in find(objects, "Deployment")]
    for service in find(objects, "Service"):
        selector = service["spec"].get("selector")
        if selector:
            assert any(selector.items() <= labels.items() for labels in templates), service["metadata"]["name"]


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_every_container_has_requests_and_limits(rendered, overlay):
    for where, spec in pod_specs(rendered[overlay]):
        for c in spec.get("initContainers", []) + spec["containers"]:
            for bound in ("requests", "limits"):
                assert set(c.get("resources", {}).get(bound, {})) == {"cpu", "memory"}, f"{where} {c['name']} {bound}"


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_pods_run_as_non_root_on_read_only_roots(rendered, overlay):
    uid = int(re.search(r"useradd [^\n]*--uid (\d+)", dockerfile()).group(1))
    multiproc = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", dockerfile()).group(1)
    for where, spec in pod_specs(rendered[overlay]):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, f"{where} {c['name']}"
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            if c["image"] == APP_IMAGES.get(overlay, APP_IMAGES["production"]):
                assert uid == 10001
                assert security.get("runAsUser", spec["securityContext"].get("runAsUser")) == uid, where
            if c["name"] in ("web", "worker", "beat", "migrate"):
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                # The writable places the app needs: /tmp (gunicorn's heartbeat,
                # PROMETHEUS_MULTIPROC_DIR, beat's schedule) as an emptyDir.
                assert "emptyDir" in volumes[mounts["/tmp"]], where
                assert multiproc.startswith("/tmp/")


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_images_and_commands_are_the_dockerfiles_and_scripts(rendered, overlay):
    objects = rendered[overlay]
    image = APP_IMAGES.get(overlay, APP_IMAGES["production"])
    web, worker, beat = (container(objects, n) for n in ("web", "worker", "beat"))
    migrate = container(objects, "migrate", kind="Job")
    assert {c["image"] for c in (web, worker, beat, migrate)} == {image}
    (copy_static,) = one(objects, "Deployment", "nginx")["spec"]["template"]["spec"]["initContainers"]
    assert copy_static["image"] == image
    # The static files the init container copies are where the image collected them.
    assert "STATIC_ROOT=/app/var/staticfiles" in dockerfile() and "/app/var/staticfiles/." in copy_static["command"][-1]
    # web runs the image's CMD (gunicorn), unchanged.
    assert "command" not in web and "args" not in web
    assert 'CMD ["gunicorn", "cardshop.wsgi:application"' in dockerfile()
    for c, script in ((worker, "celery_worker/worker.sh"), (beat, "celery_worker/beat.sh")):
        assert c["command"] == [script] and "args" not in c
        assert os.access(ROOT / script, os.X_OK), f"{script} must be executable"
        # The compose file starts the same processes the same way.
        assert f'command: ["{script}"]' in (ROOT / "docker-compose.yml").read_text()
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    for c in (web, worker, beat, migrate):
        sources = [next(iter(s.values()))["name"].rsplit("-", 1)[0] for s in c["envFrom"]]
        assert sources == ["cardshop-config", "cardshop-secrets"], c["name"]


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_configuration_uses_the_names_of_env_example(rendered, overlay):
    objects = rendered[overlay]
    known = env_example_names()
    config = config_of(objects, "cardshop-config", "ConfigMap")
    secret = config_of(objects, "cardshop-secrets", "Secret")
    assert not set(config) - known, f"ConfigMap keys not in .env.example: {sorted(set(config) - known)}"
    assert not set(secret) - known, f"Secret keys not in .env.example: {sorted(set(secret) - known)}"
    leaked = {n for n in config if SECRET_NAME.search(n) and n not in NOT_SECRET_URLS}
    assert not leaked, f"secrets in the ConfigMap: {sorted(leaked)}"
    assert not set(config) & set(secret)
    for where, spec in pod_specs(objects):
        for c in spec.get("initContainers", []) + spec["containers"]:
            for variable in c.get("env", []):
                name = variable["name"]
                assert name in known or name in PROCESS_VARIABLES, f"{where}: {name} is neither a setting nor read"
                if name in PROCESS_VARIABLES:
                    assert name in PROCESS_VARIABLES[name].read_text()


def test_secret_examples_use_env_example_names_and_cover_what_production_requires():
    known = env_example_names()
    production = (ROOT / "cardshop" / "settings" / "production.py").read_text()
    required = set(re.findall(r'_required\("([A-Z_]+)"\)', production))
    assert {"DJANGO_SECRET_KEY", "CARDKEY_ENCRYPTION_KEYS", "CARDKEY_FINGERPRINT_KEY"} <= required
    for example in K8S.glob("overlays/*/secrets.env.example"):
        names = set(env_file(example))
        assert names <= known, f"{example}: {sorted(names - known)} not in .env.example"
        assert required <= names, f"{example} lacks {sorted(required - names)}"
        assert {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"} <= names
        for name, value in env_file(example).items():
            assert "CHANGE-ME" in value, f"{example}: {name} holds a value, not a placeholder"
        # Real values stay out of git.
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(example.parent / "secrets.env")], cwd=ROOT, check=False
        )
        assert ignored.returncode == 0, f"{example.parent}/secrets.env is not ignored by git"


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_production_settings_start_on_the_rendered_configuration(rendered, overlay):
    """What the pods get, fed to cardshop.settings.production: its insistence
    on real secrets, SMTP mail and payment keys passes, and the settings see the
    servers by the names of the Services."""
    env = environment(rendered[overlay])
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({"
        "'hosts': s.ALLOWED_HOSTS, 'db': s.DATABASES['default']['HOST'], 'replica': s.DATABASES['replica']['HOST'],"
        "'gate_cluster': s.GATE_REDIS_CLUSTER, 'gate': s.GATE_REDIS_URL, 'broker': s.CELERY_BROKER_URL,"
        "'debug': s.DEBUG, 'sandbox': 'sandbox' in s.PAYMENT_PROVIDERS}))"
    )
    child_env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "cardshop.settings.production", **env}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"production settings refused the {overlay} configuration:\n{done.stderr[-2000:]}"
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    if overlay != "single-node":  # the demo is plain HTTP on purpose
        # Django's own deployment checklist passes too, warnings included.
        check = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert check.returncode == 0, f"manage.py check --deploy on {overlay}:\n{check.stdout}{check.stderr[-2000:]}"
    assert seen["debug"] is False and seen["db"] == "mariadb"
    assert urlsplit(seen["broker"]).scheme == "amqp", "RabbitMQ is the broker"
    if overlay == "single-node":
        assert seen["gate_cluster"] is False and seen["replica"] == "mariadb" and seen["sandbox"] is True
    else:
        assert seen["gate_cluster"] is True and urlsplit(seen["gate"]).hostname == "gate-redis"
        assert seen["replica"] == "mariadb-replica" and seen["sandbox"] is False


def test_production_settings_refuse_a_configuration_without_its_secrets(rendered):
    """The check above can fail: without the encryption keys, production stops."""
    env = environment(rendered["production"])
    del env["CARDKEY_ENCRYPTION_KEYS"]
    child_env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "cardshop.settings.production", **env}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "CARDKEY_ENCRYPTION_KEYS" in done.stderr


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_every_server_named_in_the_urls_is_a_service(rendered, overlay):
    objects = rendered[overlay]
    env = environment(objects)
    services = {s["metadata"]["name"]: s for s in find(objects, "Service")}
    for name in ("DATABASE_URL", "DATABASE_REPLICA_URL", "REDIS_URL", "GATE_REDIS_URL", "CELERY_BROKER_URL"):
        if name in env:
            url = urlsplit(env[name])
            assert url.hostname in services, f"{name} names {url.hostname}, which no Service in {overlay} is"
            ports = [p["port"] for p in services[url.hostname]["spec"]["ports"]]
            assert url.port in ports, f"{name}: port {url.port} not served by Service {url.hostname}"
            service = services[url.hostname]["spec"]
            if service.get("type") != "ExternalName":
                # No selector: the EndpointSlice says where the server is.
                slices = [
                    e
                    for e in find(objects, "EndpointSlice")
                    if e["metadata"]["labels"]["kubernetes.io/service-name"] == url.hostname
                ]
                assert slices and "selector" not in service, url.hostname
    # nginx's upstream is the web Service, by the name and port its configuration uses.
    upstream = re.search(
        r"upstream cardshop_web \{\s*server (\S+):(\d+);", (ROOT / "deploy/nginx/cardshop.conf").read_text()
    )
    assert upstream.group(1) in services
    assert int(upstream.group(2)) in [p["port"] for p in services[upstream.group(1)]["spec"]["ports"]]


def test_nginx_runs_the_configuration_the_nginx_tests_run():
    assert (K8S / "base" / "nginx" / "cardshop.conf").read_bytes() == (
        ROOT / "deploy/nginx/cardshop.conf"
    ).read_bytes(), (
        "deploy/k8s/base/nginx/cardshop.conf must be a copy of deploy/nginx/cardshop.conf (kustomize reads no file outside deploy/k8s/base)"
    )


def test_nginx_mounts_static_media_and_its_conf_where_the_conf_expects(rendered):
    objects = rendered["production"]
    conf = (ROOT / "deploy/nginx/cardshop.conf").read_text()
    spec = one(objects, "Deployment", "nginx")["spec"]["template"]["spec"]
    (nginx,) = spec["containers"]
    mounts = {m["mountPath"] for m in nginx["volumeMounts"]}
    for alias in re.findall(r"alias (\S+)/;", conf):
        assert alias in mounts, f"nginx serves {alias} but nothing is mounted there"
    assert re.search(r"listen 80 default_server", conf) and 80 in [p["containerPort"] for p in nginx["ports"]]
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in spec["securityContext"]["sysctls"]
    web_media = {m["mountPath"]: m["name"] for m in container(objects, "web")["volumeMounts"]}
    assert "/app/var/media" in web_media, "web writes uploads to MEDIA_ROOT (/app/var/media in the image)"


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_the_migration_job_runs_once_with_the_apps_configuration(rendered, overlay):
    objects = rendered[overlay]
    job = one(objects, "Job", "migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] <= 3
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migrate"
    web = container(objects, "web")
    assert container(objects, "migrate", kind="Job")["envFrom"] == web["envFrom"]
    # deploy.sh applies these first, by label: the Job and the configuration it reads.
    for prefix, kind in (("cardshop-config", "ConfigMap"), ("cardshop-secrets", "Secret")):
        (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(prefix + "-")]
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "config"


def test_keda_scaled_object(rendered):
    """Fields as KEDA 2.x's ScaledObject specification and its rabbitmq,
    prometheus and cpu scalers document them (the CRD is not in the API schemas)."""
    objects = rendered["keda"]
    (scaled,) = find(objects, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    allowed = {
        "scaleTargetRef",
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
        "fallback",
        "advanced",
        "triggers",
    }
    assert set(spec) <= allowed
    target = spec["scaleTargetRef"]
    assert target["kind"] == "Deployment" and target["apiVersion"] == "apps/v1"
    worker = one(objects, "Deployment", target["name"])
    assert target["name"] == "worker"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert all(isinstance(spec[k], int) for k in ("pollingInterval", "cooldownPeriod", "minReplicaCount"))
    # KEDA refuses a target another HPA scales: the worker's own HPA is gone.
    assert not [h for h in find(objects, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "worker"]

    worker_env = environment(objects)
    container_spec = worker["spec"]["template"]["spec"]["containers"][0]
    queues = re.search(r"TASK_QUEUE_NAMES = \[(.*?)\]", (ROOT / "cardshop/settings/base.py").read_text(), re.S).group(1)
    collector = (ROOT / "apps/monitoring/collector.py").read_text()
    kinds = set()
    for trigger in spec["triggers"]:
        metadata = trigger["metadata"]
        # KEDA's trigger metadata is a map of strings.
        assert all(isinstance(v, str) for v in metadata.values()), trigger
        kinds.add(trigger["type"])
        if trigger["type"] == "rabbitmq":
            assert metadata["mode"] in ("QueueLength", "MessageRate")
            assert metadata["protocol"] in ("amqp", "http", "auto")
            float(metadata["value"])
            assert f"CELERY_QUEUE_{metadata['queueName'].upper()}" in queues or f'"{metadata["queueName"]}"' in queues
            # hostFromEnv is read from the target container's environment: the broker URL is there.
            assert (
                metadata["hostFromEnv"] in worker_env and urlsplit(worker_env[metadata["hostFromEnv"]]).scheme == "amqp"
            )
            assert "host" not in metadata, "no password in the ScaledObject"
            assert container_spec["envFrom"]
        elif trigger["type"] == "prometheus":
            assert urlsplit(metadata["serverAddress"]).scheme in ("http", "https")
            float(metadata["threshold"])
            (metric,) = re.findall(r"cardshop_[a-z_]+", metadata["query"])
            assert f'"{metric}"' in collector, f"{metric} is not a metric the shop exports"
        elif trigger["type"] == "cpu":
            assert trigger["metricType"] == "Utilization" and 0 < int(metadata["value"]) <= 100
        else:
            pytest.fail(f"unexpected trigger {trigger['type']}")
    assert {"rabbitmq", "prometheus", "cpu"} <= kinds


# The migrate Job's status as the API server reports it, by outcome.
JOB_STATUS = {
    "complete": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    # backoffLimit 2: three pods failed, then Kubernetes (1.31+) marks the Job so.
    "failed": {
        "failed": 3,
        "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"},
        ],
    },
    "running": {"active": 1},
}


def _fake_kubectl(tmp_path: Path, real: str, *, job: str) -> tuple[Path, Path]:
    """A kubectl that logs its calls, renders with the real kustomize and answers
    for a migrate Job in the state `job` (JOB_STATUS): `get` evaluates the caller's
    JSONPath on that Job with the real kubectl (offline: patch --local), and `wait
    --for=condition=...` behaves as kubectl's does, waiting out its whole --timeout
    when the condition never comes."""
    log = tmp_path / "calls.log"
    job_file = tmp_path / "job.json"
    job_file.write_text(
        json.dumps(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "migrate", "namespace": "cardshop"},
                "spec": {"template": {"spec": {"containers": [{"name": "migrate", "image": "cardshop"}]}}},
                "status": JOB_STATUS[job],
            }
        )
    )
    fake = tmp_path / "kubectl"
    fake.write_text(
        f"""#!/usr/bin/env bash
echo "$*" >> {log}
if [ "$1" = kustomize ]; then exec {real} "$@"; fi
if [ "$1" = create ]; then echo "apiVersion: v1"; echo "kind: Namespace"; exit 0; fi
if [ "$*" = "apply -f -" ]; then cat >/dev/null; exit 0; fi
if [ "$3" = get ] && [ "$4" = job/migrate ]; then
  shift 4
  exec {real} patch --local -f {job_file} --type merge -p '{{}}' "$@"
fi
if [ "$3" = wait ]; then
  condition=${{4#--for=condition=}}
  if grep -qi "\"type\": *\"$condition\", *\"status\": *\"True\"" {job_file}; then exit 0; fi
  timeout=${{6#--timeout=}}
  case $timeout in *m) timeout=$((${{timeout%m}} * 60));; *s) timeout=${{timeout%s}};; esac
  sleep "$timeout"
  echo "error: timed out waiting for the condition on jobs/migrate" >&2
  exit 1
fi
exit 0
"""
    )
    fake.chmod(0o755)
    return fake, log


def _deploy(tree: Path, fake: Path, **environment) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [str(K8S / "deploy.sh"), str(tree / "overlays/production")],
        env={**os.environ, "KUBECTL": str(fake), **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - started


def test_deploy_script_migrates_before_it_rolls_out(tree, kubectl_path, tmp_path):
    fake, log = _fake_kubectl(tmp_path, kubectl_path, job="complete")
    done, _ = _deploy(tree, fake)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    steps = [
        "kustomize ",
        "-n cardshop delete job migrate --ignore-not-found",
        "apply -f ",  # the configuration and the Job, by label
        "-n cardshop get job/migrate",  # until it has completed
        "apply -f ",  # everything
        "-n cardshop rollout status deployment/web",
    ]
    position = 0
    for step in steps:
        while position < len(calls) and not calls[position].startswith(step):
            position += 1
        assert position < len(calls), f"step {step!r} missing or out of order in {calls}"
        position += 1
    (first_apply,) = [c for c in calls if c.startswith("apply -f ") and " -l " in c]
    assert "app.kubernetes.io/component in (config, migrate)" in first_apply
    assert calls.index(first_apply) < calls.index(next(c for c in calls if "get job/migrate" in c))


def _assert_no_rollout(log: Path) -> None:
    calls = log.read_text().splitlines()
    applies = [c for c in calls if c.startswith("apply -f ") and " -l " not in c and " -f -" not in c]
    assert applies == [], f"rolled out after a failed migration: {applies}"
    assert not [c for c in calls if "rollout status" in c]


def test_deploy_script_stops_at_once_when_the_migrate_job_fails(tree, kubectl_path, tmp_path):
    """A Job that has failed (backoffLimit spent) never completes: the script says
    so as soon as the Job reports it, not after MIGRATE_TIMEOUT."""
    fake, log = _fake_kubectl(tmp_path, kubectl_path, job="failed")
    done, took = _deploy(tree, fake, MIGRATE_TIMEOUT="30s")
    assert done.returncode != 0 and "migrate did not complete" in done.stderr, done.stderr
    assert "failed" in done.stderr.lower(), done.stderr
    assert took < 15, f"deploy.sh took {took:.0f} s to notice the failed Job (MIGRATE_TIMEOUT 30s)"
    _assert_no_rollout(log)


def test_deploy_script_gives_up_on_a_migration_after_its_timeout(tree, kubectl_path, tmp_path):
    fake, log = _fake_kubectl(tmp_path, kubectl_path, job="running")
    done, took = _deploy(tree, fake, MIGRATE_TIMEOUT="4s")
    assert done.returncode != 0 and "migrate did not complete" in done.stderr, done.stderr
    assert 4 <= took < 30, f"gave up after {took:.0f} s (MIGRATE_TIMEOUT 4s)"
    _assert_no_rollout(log)


# --- Production's nginx: the same configuration, with TLS ending in it

PRODUCTION_CONF = K8S / "overlays" / "production" / "nginx" / "cardshop.conf"
TLS_LINE = re.compile(r"^\s*(#.*|listen 443 ssl default_server;|ssl_[a-z_]+ [^;]+;)?$")


def test_production_nginx_conf_only_adds_tls():
    import difflib

    base = (ROOT / "deploy/nginx/cardshop.conf").read_text().splitlines()
    production = PRODUCTION_CONF.read_text().splitlines()
    diff = [line for line in difflib.ndiff(base, production) if line[:2] in ("- ", "+ ")]
    removed = [line for line in diff if line.startswith("- ")]
    added = [line[2:] for line in diff if line.startswith("+ ")]
    assert not removed, f"production's nginx conf drops lines of deploy/nginx/cardshop.conf: {removed}"
    assert all(TLS_LINE.match(line) for line in added), [line for line in added if not TLS_LINE.match(line)]
    assert "    listen 443 ssl default_server;" in added
    # The certificate paths are where the nginx Deployment mounts the Secret nginx-tls.
    tls_dir = {
        re.search(r"ssl_certificate(?:_key)? (\S+)/[^/]+;", line).group(1)
        for line in added
        if "ssl_certificate" in line
    }
    assert tls_dir == {"/etc/nginx/tls"}


def test_production_nginx_mounts_the_tls_secret_and_serves_443(rendered):
    objects = rendered["production"]
    spec = one(objects, "Deployment", "nginx")["spec"]["template"]["spec"]
    (nginx,) = spec["containers"]
    (mount,) = [m for m in nginx["volumeMounts"] if m["mountPath"] == "/etc/nginx/tls"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "nginx-tls"
    assert {p["containerPort"] for p in nginx["ports"]} == {80, 443}
    service = one(objects, "Service", "nginx")["spec"]
    assert {p["port"] for p in service["ports"]} == {80, 443} and service["type"] == "LoadBalancer"
    (conf_volume,) = [v for v in spec["volumes"] if v["name"] == "conf"]
    (conf_map,) = [o for o in objects if o["metadata"]["name"] == conf_volume["configMap"]["name"]]
    assert conf_map["data"]["cardshop.conf"] == PRODUCTION_CONF.read_text()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    crt, pem = directory / "tls.crt", directory / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return crt, pem


def test_production_nginx_tells_the_app_https_from_http(tmp_path):
    """Production's conf under a real nginx (Debian's, as tests/test_nginx.py
    runs it): a request over TLS reaches the upstream with X-Forwarded-Proto
    https, one over plain HTTP with http, so the app's HTTPS redirect and HSTS
    (SECURE_PROXY_SSL_HEADER) see what the buyer used; the buyer's address is
    the last X-Forwarded-For entry (TRUSTED_PROXY_COUNT=1)."""
    import http.client
    import http.server
    import ssl
    import threading

    from testing.processes import ChildProcess, free_port
    from tests.test_nginx import nginx_binary

    seen: list[dict] = []

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    crt, pem = _self_signed(tmp_path)
    http_port, https_port = free_port(), free_port()
    site = PRODUCTION_CONF.read_text()
    for old, new in (
        ("server web:8000;", f"server 127.0.0.1:{upstream.server_port};"),
        ("listen 80 default_server;", f"listen 127.0.0.1:{http_port} default_server;"),
        ("listen 443 ssl default_server;", f"listen 127.0.0.1:{https_port} ssl default_server;"),
        ("/etc/nginx/tls/tls.crt", str(crt)),
        ("/etc/nginx/tls/tls.key", str(pem)),
        ("alias /srv/cardshop/static/;", f"alias {tmp_path}/;"),
        ("alias /srv/cardshop/media/;", f"alias {tmp_path}/;"),
    ):
        assert site.count(old) == 1, old
        site = site.replace(old, new)
    (tmp_path / "site.conf").write_text(site)
    user = "user root;" if os.geteuid() == 0 else ""
    temp_paths = "\n".join(
        f"{n}_temp_path {tmp_path / n};" for n in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"{user}\nworker_processes 1;\npid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'} warn;\n"
        f"events {{ worker_connections 64; }}\nhttp {{ access_log off;\n{temp_paths}\ninclude {tmp_path / 'site.conf'}; }}\n"
    )
    argv = [nginx_binary(), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf")]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, f"nginx -t refused production's conf:\n{check.stderr}"
    server = ChildProcess("nginx-tls", [*argv, "-g", "daemon off;"], log_path=tmp_path / "nginx.log").start()
    try:
        context = ssl.create_default_context(cafile=str(crt))

        def get(connection) -> int:
            connection.request("GET", "/healthz", headers={"Host": "localhost", "X-Forwarded-Proto": "https"})
            return connection.getresponse().status

        def https_answers() -> bool:
            try:
                return get(http.client.HTTPSConnection("localhost", https_port, timeout=5, context=context)) == 200
            except OSError:
                return False

        server.wait_until(https_answers, timeout=10, what="nginx over TLS")
        assert seen[-1]["x-forwarded-proto"] == "https"
        assert seen[-1]["x-forwarded-for"].split(",")[-1].strip() == "127.0.0.1"
        # Plain HTTP, whatever the client claims: the app must see http and redirect.
        assert get(http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)) == 200
        assert seen[-1]["x-forwarded-proto"] == "http"
    finally:
        server.stop(timeout=10, signum=signal.SIGQUIT)
        upstream.shutdown()


def test_deploy_doc_quotes_measured_figures_only():
    """docs/deploy.md's "What to scale when" quotes docs/benchmarks.md: every
    number in it is one that page measured (or names the run)."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = doc[doc.index("## What to scale when") :]
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text()
    # 24,254 and 4 363 (a narrow space) are the same kind of number as 24254.
    measured = re.sub(r"(?<=\d)[,\s\u202f\u00a0](?=\d{3}\b)", "", benchmarks)
    for number in re.findall(r"\d[\d,]*(?:\.\d+)?", section):
        plain = number.replace(",", "").rstrip(".")
        assert plain in measured, f"docs/deploy.md quotes {number}, which docs/benchmarks.md does not have"
    assert "c83c93f" in section and "c83c93f" in benchmarks
    assert "(docs/deploy.md)" in (ROOT / "README.md").read_text()
