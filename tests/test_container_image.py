"""The container image, built by podman from the project's Dockerfile on a local
python:3.11-slim-bookworm stand-in (scripts/build_image.sh, `make image`) and run
here: its web command (the image's CMD, gunicorn), worker (celery_worker/worker.sh)
and beat (celery_worker/beat.sh) as containers on the host's network, against the
machine's MariaDB (a database of this test's own), Redis (a key prefix of its own)
and RabbitMQ (a virtual host of its own), with production settings. Management
commands run inside the image too (create_database, migrate, create_product,
import_keys, warm_stock); then one key is bought over HTTP and shown to the buyer.

podman runs with Debian's runc and the default open-files and process limits,
since these machines refuse to raise them. `make test` installs podman, runc and
debootstrap (scripts/ensure_system_packages.sh --container); without them this
test fails saying so. A cold build (no base image, no layers) takes a few
minutes, a warm one seconds (docs/container-image.md)."""

import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from testing.processes import free_port, rabbitmq_vhost_ensure, rabbitmq_vhost_remove

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("CONTAINER_TEST_IMAGE", "cardshop:local")
# Debian's runc, as scripts/build_image.sh uses (PODMAN_RUNTIME there and here).
RUNC = os.environ.get("PODMAN_RUNTIME") or "/usr/sbin/runc"
# Raising the open-files or process limits is refused on these machines, and
# podman asks for more than the defaults unless told.
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
# The cold path builds the base (debootstrap) and every layer: a few minutes here.
BUILD_TIMEOUT = 900
# The largest image this test accepts: today's is about 350 MB. A compiler or a
# build tree that slipped into the runtime stage would add far more than the margin.
MAX_IMAGE_BYTES = 550_000_000
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-gcc-12")
NAME = os.environ.get("TEST_REDIS_KEY_PREFIX", "cardshop-test") + "-container"
DATABASE = os.environ.get("TEST_DATABASE_NAME", "test_cardshop") + "_container"
K8S_BASE = ROOT / "deploy" / "k8s" / "base"
# Written before the build when the checkout has none (the image fixture).
SECRET_SENTINEL = ROOT / "deploy" / "k8s" / "overlays" / "production" / "secrets.env"

# The first test to ask for the image may build it from nothing (BUILD_TIMEOUT).
pytestmark = [pytest.mark.container, pytest.mark.timeout(BUILD_TIMEOUT + 300)]


def podman_base() -> list[str]:
    """podman with Debian's runc. Installs podman, runc and debootstrap through the
    project's script when missing (as `make test` does); fails saying what is missing."""
    if not shutil.which("podman") or not os.path.exists(RUNC):
        result = subprocess.run(
            [str(ROOT / "scripts" / "ensure_system_packages.sh"), "--container"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0 or not shutil.which("podman") or not os.path.exists(RUNC):
            pytest.fail(
                "The container image test needs podman and Debian's runc (and debootstrap for the base "
                "image): run `scripts/ensure_system_packages.sh --container` as root "
                "(apt-get install podman runc debootstrap).\n" + result.stdout[-2000:] + result.stderr[-2000:]
            )
    return ["podman", "--runtime", RUNC]


def podman(*args: str, timeout: float = 120, check: bool = True, input: str | None = None):
    result = subprocess.run([*podman_base(), *args], capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} ... failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def http_json(url: str, *, body: dict | None = None, headers: dict | None = None, timeout: float = 10):
    """(status, parsed JSON body) of a GET, or of a POST when `body` is given."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST" if data else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def poll(predicate, *, timeout: float, what: str, interval: float = 0.5, diagnose=lambda: ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{diagnose()}")


@pytest.fixture(scope="module")
def image():
    """The image, built (or found up to date, layer by layer) by the same script as
    `make image`. Returns its size in bytes."""
    podman_base()
    started = time.monotonic()
    # An overlay's secrets.env in the checkout, as docs/deploy.md has an operator
    # make one: test_image_holds_no_secret_of_the_checkout looks for it in the image.
    # A real one is left alone; the stand-in never outlives the build.
    sentinel = None if SECRET_SENTINEL.exists() else SECRET_SENTINEL
    try:
        if sentinel is not None:
            sentinel.write_text("# tests/test_container_image.py: a stand-in, never a secret\nSENTINEL=1\n")
        result = subprocess.run(
            [str(ROOT / "scripts" / "build_image.sh")],
            cwd=ROOT,
            env={**os.environ, "IMAGE": IMAGE},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    finally:
        if sentinel is not None:
            sentinel.unlink(missing_ok=True)
    assert result.returncode == 0, f"scripts/build_image.sh failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    print(f"\n{IMAGE}: {size / 1e6:.0f} MB, built or checked in {time.monotonic() - started:.0f} s")
    return size


def run_once(
    *args: str,
    env_file: Path | None = None,
    network: str = "host",
    timeout: float = 180,
    options: tuple[str, ...] = (),
    **kwargs,
):
    """`podman run --rm` of the image, with the test's environment."""
    options = ["run", "--rm", "--pull=never", f"--network={network}", *LIMITS, *options]
    if env_file is not None:
        options += ["--env-file", str(env_file)]
    if kwargs.get("input") is not None:
        options.append("-i")
    return podman(*options, IMAGE, *args, timeout=timeout, **kwargs)


def k8s_options(kind: str, name: str, *, volumes: dict[str, str]) -> list[str]:
    """The `podman run` options that give a container what deploy/k8s/base gives the
    pod of that name: its user, a read-only root file system, no capabilities, no
    privilege escalation, each emptyDir as a tmpfs of its size, each persistent
    volume as the podman volume `volumes[claim]`, and the container's own env."""
    import yaml

    manifest = K8S_BASE / ("migrate-job.yaml" if kind == "Job" else f"{name}.yaml")
    (obj,) = [o for o in yaml.safe_load_all(manifest.read_text()) if o and o["kind"] == kind]
    pod = obj["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container.get("securityContext", {})
    options = [f"--user={pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"]
    if security.get("readOnlyRootFilesystem"):
        # Only the mounts below are writable: podman's own tmpfs on /tmp, /var/tmp
        # and /run, which a pod does not have, are turned off.
        options += ["--read-only", "--read-only-tmpfs=false"]
    if security.get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    options += [f"--cap-drop={cap}" for cap in security.get("capabilities", {}).get("drop", [])]
    sources = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        source = sources[mount["name"]]
        if "emptyDir" in source:
            size = source["emptyDir"].get("sizeLimit", "64Mi").replace("Mi", "m").replace("Gi", "g")
            options += ["--tmpfs", f"{mount['mountPath']}:rw,exec,nosuid,nodev,size={size},mode=1777"]
        else:
            claim = source["persistentVolumeClaim"]["claimName"]
            options += ["--volume", f"{volumes[claim]}:{mount['mountPath']}"]
    options += [f"--env={variable['name']}={variable['value']}" for variable in container.get("env", [])]
    return options


def test_image_holds_no_secret_of_the_checkout(image):
    """`COPY . .` copies the build context: secrets in the checkout (an overlay's
    secrets.env, a developer's .env) must stay out of every layer (.dockerignore)."""
    paths = [f"/app/{SECRET_SENTINEL.relative_to(ROOT)}", "/app/.env", "/app/var/media/logo.png"]
    found = run_once("sh", "-c", 'for p in "$@"; do [ -e "$p" ] && echo "$p"; done; true', "sh", *paths).stdout
    assert found.split() == [], f"secrets of the checkout in {IMAGE}: {found.split()}"


def test_image_runs_as_non_root_without_a_compiler(image, capsys):
    with capsys.disabled():
        print(f"\ncontainer image {IMAGE}: {image / 1e6:.0f} MB ({image} bytes)")
    assert image < MAX_IMAGE_BYTES, f"{IMAGE} is {image / 1e6:.0f} MB"
    probe = "id -u; for c in " + " ".join(COMPILERS) + '; do command -v "$c" || true; done'
    lines = run_once("sh", "-c", probe).stdout.split()
    assert lines and lines[0].isdigit(), lines
    assert int(lines[0]) != 0, "the image runs as root"
    assert lines[1:] == [], f"compilers in the runtime image: {lines[1:]}"
    # What the compiler built still loads there: mysqlclient against the runtime's libmariadb3.
    assert run_once("python", "-c", "import MySQLdb, cryptography, PIL; print('ok')").stdout.strip() == "ok"


def production_env(*, port: int | None) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {
        "DJANGO_SETTINGS_MODULE": "cardshop.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "CARDKEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "CARDKEY_FINGERPRINT_KEY": secrets.token_urlsafe(48),
        "ALLOW_SANDBOX_PAYMENTS": "true",
        "PAYMENT_PROVIDERS": "sandbox",
        "SANDBOX_PAYMENT_SECRET": secrets.token_urlsafe(48),
        # Production refuses backends that print or file mail (keys travel in it);
        # there is no mail server here, and the buyer reads the key over the API.
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Plain HTTP on loopback, as in docker-compose.yml's demo.
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "LOG_FORMAT": "plain",
        "WEB_CONCURRENCY": "2",
        "CELERY_CONCURRENCY": "2",
    }
    if port is not None:
        env["SITE_URL"] = f"http://127.0.0.1:{port}"
    return env


def env_file_write(path: Path, env: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}={value}\n" for name, value in env.items()))
    path.chmod(0o600)
    return path


def test_healthcheck_of_the_image_tells_a_live_web_from_a_dead_one(image, tmp_path):
    """The Dockerfile's HEALTHCHECK, run by podman as an orchestrator would, against
    the image's own CMD (gunicorn on :8000) in a network of its own (no database:
    /healthz touches none), and against a container where nothing listens."""
    env_file = env_file_write(tmp_path / "env", production_env(port=None))
    suffix = uuid.uuid4().hex[:8]
    web, idle = f"cardshop-hc-web-{suffix}", f"cardshop-hc-idle-{suffix}"
    common = ["run", "-d", "--pull=never", "--network=none", *LIMITS, "--env-file", str(env_file)]
    try:
        podman(*common, "--name", web, IMAGE)
        podman(*common, "--name", idle, IMAGE, "sleep", "120")
        health = podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", IMAGE).stdout
        assert "/healthz" in health, health

        def healthy():
            return podman("healthcheck", "run", web, check=False).returncode == 0

        poll(healthy, timeout=60, what="the web container's health check", diagnose=lambda: podman("logs", web).stdout)
        result = podman("healthcheck", "run", idle, check=False)
        assert result.returncode != 0, result.stdout + result.stderr
    finally:
        podman("rm", "-f", "-t", "2", web, idle, check=False, timeout=60)


@pytest.fixture
def services():
    """This test's database, Redis key prefix and RabbitMQ virtual host, removed afterwards."""
    import MySQLdb
    import redis

    base = os.environ.get("DATABASE_URL", "mysql://root:@127.0.0.1:3306/cardshop")
    parts = urllib.parse.urlsplit(base)
    assert parts.hostname in ("127.0.0.1", "localhost"), "the containers reach only this machine's MariaDB"
    database_url = urllib.parse.urlunsplit(
        parts._replace(netloc=parts.netloc.replace("localhost", "127.0.0.1"), path=f"/{DATABASE}")
    )
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    broker_url = f"amqp://guest:guest@127.0.0.1:5672/{urllib.parse.quote(NAME, safe='')}"
    rabbitmq_vhost_ensure(broker_url)

    def drop_database():
        server = MySQLdb.connect(
            host=parts.hostname, port=parts.port or 3306, user=parts.username or "root", password=parts.password or ""
        )
        try:
            with server.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
        finally:
            server.close()

    def clear_redis():
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=NAME + ":*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()

    drop_database()  # a run that died before its teardown
    clear_redis()
    try:
        yield {
            "DATABASE_URL": database_url,
            "DATABASE_REPLICA_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": NAME,
            "CELERY_BROKER_URL": broker_url,
        }
    finally:
        drop_database()
        clear_redis()
        rabbitmq_vhost_remove(broker_url)


def test_web_worker_and_beat_containers_sell_a_key(image, services, tmp_path):
    """Each container runs as its Kubernetes pod does (k8s_options): read-only root,
    only /tmp (and web's media volume) writable, no capabilities, so the sale also
    proves the image works under deploy/k8s's restrictions."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**production_env(port=port), **services, "WORKER_LOG_LEVEL": "INFO"}
    env_file = env_file_write(tmp_path / "env", env)
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"cardshop-{role}-{suffix}" for role in ("web", "worker", "beat")}
    key = f"IMAGE-KEY-{secrets.token_hex(8).upper()}"
    sku = f"IMG-{suffix}"

    def log(name: str, tail: int = -1) -> str:
        result = podman("logs", "--tail", str(tail), name, check=False)
        return result.stdout + result.stderr

    def logs() -> str:
        return "\n".join(f"--- {role}:\n{log(name, 40)[-3000:]}" for role, name in names.items())

    # The migrate Job's pod for every management command: read-only too.
    job = tuple(k8s_options("Job", "migrate", volumes={}))

    def manage(*args: str, input: str | None = None) -> str:
        return run_once("python", "manage.py", *args, env_file=env_file, input=input, options=job).stdout

    media = f"cardshop-media-{suffix}"
    podman("volume", "create", media)
    try:
        manage("create_database")
        manage("migrate", "--noinput", "-v", "0")
        manage("create_product", "--sku", sku, "--title", "Container key", "--price", "9.90")
        # It exits non-zero when no line held a new key.
        manage("import_keys", "--sku", sku, "--no-progress", "-", input=key + "\n")
        manage("warm_stock", "--sku", sku)

        # The web command is the image's CMD with its address moved to a free port:
        # on the host's network 8000 may be taken (make run listens there).
        command = json.loads(podman("image", "inspect", "--format", "{{json .Config.Cmd}}", IMAGE).stdout)
        assert command[0] == "gunicorn" and "--bind" in command, command
        command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
        detached = ["run", "-d", "--pull=never", "--network=host", *LIMITS, "--env-file", str(env_file)]
        for role, args in (("worker", ["celery_worker/worker.sh"]), ("beat", ["celery_worker/beat.sh"])):
            pod = k8s_options("Deployment", role, volumes={})
            podman(*detached, *pod, "--name", names[role], IMAGE, *args)
        pod = k8s_options("Deployment", "web", volumes={"media": media})
        assert "--read-only" in pod and any(o.startswith("/tmp:") for o in pod), pod
        podman(*detached, *pod, "--name", names["web"], IMAGE, *command)

        poll(
            lambda: http_json(f"{url}/readyz", timeout=5)[0] == 200 if _listens(port) else False,
            timeout=90,
            what="/readyz of the web container (database, Redis, broker, stock warmed)",
            diagnose=logs,
        )
        # Beat and worker both run: the worker has done a task only beat sends.
        poll(
            lambda: re.search(r"overload_check_task\[[^]]+\] succeeded", log(names["worker"])),
            timeout=60,
            what="the worker container to run a task the beat container scheduled",
            diagnose=logs,
        )

        status, product = http_json(f"{url}/api/v1/products/{sku}")
        assert status == 200, product
        # The page token must be held open for the product's minimum page time (2 s).
        time.sleep(2.2)
        status, order = http_json(
            f"{url}/api/v1/orders",
            body={"sku": sku, "quantity": 1, "email": "buyer@example.com"},
            headers={"X-Page-Token": product.get("page_token", "")},
        )
        assert status == 202, (status, order, logs())
        order_url = f"{url}/api/v1/orders/{order['order_no']}"
        token = {"X-Order-Token": order["access_token"]}

        poll(
            lambda: http_json(order_url, headers=token)[1].get("status") not in (None, "queued"),
            timeout=60,
            what="the worker to persist the order",
            diagnose=logs,
        )
        status, paid = http_json(f"{url}/api/v1/payments/sandbox/{order['order_no']}/pay", body={}, headers=token)
        assert status == 202, (status, paid, logs())
        delivered = poll(
            lambda: (lambda body: body if body.get("keys") else None)(http_json(order_url, headers=token)[1]),
            timeout=60,
            what="the key on the order",
            diagnose=logs,
        )
        assert delivered["status"] == "delivered", delivered
        assert delivered["keys"] == [key], delivered

        for role, name in names.items():
            state = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            assert state == "true", f"{role} container stopped:\n{logs()}"
            # A write the process survived (a cache, a state file) still counts.
            assert "Read-only file system" not in log(name), f"{role} wrote outside its volumes:\n{log(name)}"
    finally:
        podman("rm", "-f", "-t", "5", *names.values(), check=False, timeout=120)
        podman("volume", "rm", "-f", media, check=False)


def _listens(port: int) -> bool:
    from testing.processes import port_listens

    return port_listens(port)


# --- The build context: what `COPY . .` may put into a layer


def _dockerignore_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as the builders read it (moby's patternmatcher,
    which buildah uses too): anchored at the context's root, `*` and `?` within
    one path element, `**` across any number of them."""
    pattern = os.path.normpath(pattern.strip()).lstrip("/")
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            out += ".*" if i >= len(pattern) else "(.*/)?"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(f"^{out}$")


def dockerignored(path: str, lines: list[str]) -> bool:
    """Whether the builder leaves `path` (relative to the context) out: the last
    pattern that matches it or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        regex = _dockerignore_regex(line[1:] if exclusion else line)
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not exclusion
    return ignored


def test_the_dockerignore_matcher_reads_patterns_as_the_builder_does():
    lines = ["var", "**/*.pyc", "deploy/*/secrets.env", "*.env", "!keep.env"]
    assert dockerignored("var/media/logo.png", lines)
    assert dockerignored("apps/shop/__pycache__/models.cpython-311.pyc", lines)
    assert dockerignored("deploy/prod/secrets.env", lines)
    assert not dockerignored("deploy/prod/nested/secrets.env", lines)  # `*` is one path element
    assert dockerignored("local.env", lines)
    assert not dockerignored("keep.env", lines)
    assert not dockerignored("apps/var", lines)  # anchored at the root, unlike .gitignore
    assert not dockerignored("manage.py", lines)


# Paths git ignores because they hold secrets or local state; docs/deploy.md has the
# operator create each overlay's secrets.env in the checkout the image is built from.
SECRET_PATHS = [
    ".env",
    "deploy/k8s/overlays/production/secrets.env",
    "deploy/k8s/overlays/single-node/secrets.env",
    "deploy/k8s/overlays/staging/secrets.env",
    "var/media/logo.png",
]
# What the image needs (the Dockerfile's build stage and the start scripts).
IMAGE_PATHS = [
    "manage.py",
    "gunicorn.conf.py",
    "requirements.txt",
    "celery_worker/worker.sh",
    "celery_worker/beat.sh",
    "cardshop/settings/production.py",
    "locale/zh_Hans/LC_MESSAGES/django.po",
    "static",
    "templates",
]


def test_the_build_context_leaves_out_everything_git_ignores():
    """Whatever .gitignore keeps out of the repository (secrets, local state) the
    .dockerignore keeps out of the image: checked for the paths the checkout has
    ignored right now and for the secret files an operator creates."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    present = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # One path for each .gitignore pattern at the root, whether present now or not.
    patterns = [line for line in (ROOT / ".gitignore").read_text().splitlines() if line and line[0] not in "#!"]
    # (A pattern ending in / matches directories only: a file inside one stands for it.)
    # (A pattern ending in / matches directories only: a file inside one stands for
    # it; git refuses paths through a symbolic link, e.g. a worktree's .venv, which
    # `present` holds anyway.)
    synthetic = {re.sub(r"\*+", "x", p).lstrip("/") + ("x" if p.endswith("/") else "") for p in patterns}
    synthetic = {path for path in synthetic if not (ROOT / path.split("/")[0]).is_symlink()}
    samples = sorted({path.rstrip("/") for path in present} | synthetic | set(SECRET_PATHS))
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(samples) + "\n",
        capture_output=True,
        text=True,
    )
    assert checked.returncode in (0, 1), checked.stderr
    git_ignored = set(checked.stdout.split())
    assert set(SECRET_PATHS) <= git_ignored, "git no longer ignores a secret path: fix .gitignore"
    leaked = [path for path in sorted(git_ignored) if not dockerignored(path, lines)]
    assert leaked == [], f"ignored by git but copied into the image by `COPY . .`: {leaked}"
    dropped = [path for path in IMAGE_PATHS if dockerignored(path, lines)]
    assert dropped == [], f".dockerignore leaves out what the image needs: {dropped}"


def test_a_rebuild_replaces_its_images_instead_of_leaving_them_behind(image, tmp_path):
    """scripts/build_image.sh twice, under a tag of its own, from a copy of the
    checkout with one file changed in between (the cheap path: the base and the
    pip layer come from the cache): the second build removes the runtime and
    build-stage images of the first instead of leaving ~950 MB of <none> behind,
    also when another build took the tag in between, and nothing with another name."""
    copy = tmp_path / "src"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    tag = f"cardshop-rebuild-test:{uuid.uuid4().hex[:8]}"
    probe = copy / "static" / "rebuild-probe.txt"

    def build(content: str) -> tuple[str, str]:
        probe.write_text(content)
        done = subprocess.run(
            [str(copy / "scripts" / "build_image.sh")],
            env={**os.environ, "IMAGE": tag},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        assert done.returncode == 0, f"build_image.sh failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return tuple(
            podman("image", "inspect", "--format", "{{.Id}}", name).stdout.strip() for name in (tag, f"{tag}-build")
        )

    base = "localhost/python:3.11-slim-bookworm"
    try:
        first = build(uuid.uuid4().hex)
        # Another build (the same tag from another checkout) took the tag meanwhile:
        # here the base image, which must survive, as it has a name of its own.
        # The first runtime image now dangles with no tag to say whose it was.
        podman("tag", base, tag)
        second = build(uuid.uuid4().hex)
        assert first[0] != second[0] and first[1] != second[1], (first, second)
        left = [i for i in first if podman("image", "exists", i, check=False).returncode == 0]
        assert left == [], f"the first build's images are still in the store: {left}"
        assert podman("image", "exists", base, check=False).returncode == 0, "the cleanup removed the base image"
        dangling = podman("images", "--quiet", "--no-trunc", "--filter", "dangling=true").stdout.split()
        assert not set(second) & {i.removeprefix("sha256:") for i in dangling}, "this build's images dangle"
    finally:
        podman("rmi", f"{tag}", f"{tag}-build", check=False, timeout=120)
