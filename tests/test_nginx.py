"""deploy/nginx/cardshop.conf under a real nginx (Debian package) in front of
the app under gunicorn (issue 4): one client address hammering is answered 429
by nginx while another address is still served; static files come from disk;
the client address reaches the app through X-Forwarded-For, and an address a
client writes there itself is ignored.

The second client binds its socket to 127.0.0.2 (the loopback range, so no
network is touched). nginx runs as the current user with every path in a
temporary directory."""

import getpass
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apps.orders.tests.processes import GunicornServer
from apps.orders.tests.support import product_with_keys
from testing.processes import ChildProcess, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "cardshop.conf"
MIME_TYPES = Path("/etc/nginx/mime.types")


def nginx_binary() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if binary is None:
        pytest.fail(
            "nginx is not installed. `make test` installs it (scripts/ensure_system_packages.sh --browser); "
            "on Debian/Ubuntu: apt-get install nginx-light"
        )
    return binary


def render_site(*, upstream: str, port: int, static_root: str, media_root: str) -> str:
    """The deploy file with its four deployment-specific values swapped."""
    text = DEPLOY_CONF.read_text()
    for old, new in (
        ("server web:8000;", f"server {upstream};"),
        ("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;"),
        ("alias /srv/cardshop/static/;", f"alias {static_root}/;"),
        ("alias /srv/cardshop/media/;", f"alias {media_root}/;"),
    ):
        assert text.count(old) == 1, f"{DEPLOY_CONF} no longer contains {old!r} exactly once"
        text = text.replace(old, new)
    return text


class Nginx(ChildProcess):
    def __init__(self, *, upstream: str, static_root: str, media_root: str):
        self.binary = nginx_binary()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="nginx-"))
        (self.dir / "site.conf").write_text(
            render_site(upstream=upstream, port=self.port, static_root=static_root, media_root=media_root)
        )
        # As root nginx would hand its workers to "nobody"; keep them this user's.
        user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        mime = f"include {MIME_TYPES};" if MIME_TYPES.exists() else ""
        temp_paths = "\n".join(
            f"    {name}_temp_path {self.dir / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (self.dir / "nginx.conf").write_text(
            f"""{user}
worker_processes 1;
pid {self.dir / "nginx.pid"};
error_log {self.dir / "error.log"} warn;
events {{ worker_connections 512; }}
http {{
    access_log {self.dir / "access.log"};
{temp_paths}
    {mime}
    default_type application/octet-stream;
    include {self.dir / "site.conf"};
}}
"""
        )
        # Its stderr joins its error log, so a failure to start shows both.
        super().__init__("nginx", self.command("-g", "daemon off;"), log_path=self.dir / "error.log")

    def command(self, *extra: str) -> list[str]:
        conf = str(self.dir / "nginx.conf")
        return [self.binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", conf, *extra]

    def start(self) -> "Nginx":
        check = subprocess.run(self.command("-t"), capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t refused the rendered config:\n{check.stderr}"
        return super().start().wait_until(self._answers, timeout=10, what=f"/healthz through port {self.port}")

    def _answers(self) -> bool:
        try:
            return request("127.0.0.1", self.port, "GET", "/healthz")[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        super().stop(timeout=10, signum=signal.SIGQUIT)  # SIGQUIT: nginx's graceful shutdown
        shutil.rmtree(self.dir, ignore_errors=True)


def request(source: str, port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    """One request from the given local address. Returns (status, headers, body text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})} if payload else dict(headers or {})
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode(errors="replace")
    finally:
        connection.close()


@pytest.fixture
def static_root():
    root = Path(tempfile.mkdtemp(prefix="static-"))
    (root / "css").mkdir()
    (root / "css" / "probe.css").write_text("/* served by nginx */\n")
    yield str(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def media_root():
    """nginx's MEDIA_ROOT: a product image and a file that is no image. The app
    under it has another MEDIA_ROOT, so what answers here is nginx."""
    root = Path(tempfile.mkdtemp(prefix="media-"))
    (root / "products" / "renditions").mkdir(parents=True)
    (root / "products" / "renditions" / "7-card.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 probe")
    (root / "products" / "page.html").write_text("<script>alert(1)</script>")
    yield str(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack(static_root, media_root, tmp_path):
    # The per-client limits in the app are off, so every 429 below is nginx's.
    app = GunicornServer(
        workers=2,
        threads=8,
        extra_env={
            "TRUSTED_PROXY_IP_HEADER": "X-Forwarded-For",
            "TRUSTED_PROXY_COUNT": "1",
            "RATELIMIT_ENABLE": "false",
            "UNPAID_CAP_PER_IP": "0",
            "MEDIA_ROOT": str(tmp_path / "app-media"),
        },
    ).start()
    nginx = Nginx(upstream=f"127.0.0.1:{app.port}", static_root=static_root, media_root=media_root)
    try:
        nginx.start()
        yield nginx
    finally:
        nginx.stop()
        app.stop()


def hammer(port: int, method: str, path: str, count: int, body: dict | None = None) -> list[tuple]:
    """`count` requests from 127.0.0.1, 16 at a time: far quicker than the zone's rate
    even on a busy machine, so the limit shows whatever the app's speed."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda _: request("127.0.0.1", port, method, path, body), range(count)))


def test_one_address_hammering_is_limited_while_another_is_served(stack):
    port = stack.port
    answers = hammer(port, "GET", "/", 90)
    pages = [status for status, _, _ in answers]
    assert pages.count(429) >= 20 and pages.count(200) >= 40, pages
    _, headers, body = next(answer for answer in answers if answer[0] == 429)
    assert headers["Retry-After"] == "1" and json.loads(body)["error"] == "rate_limited"
    assert request("127.0.0.2", port, "GET", "/")[0] == 200

    checkouts = [a[0] for a in hammer(port, "POST", "/api/v1/orders", 30, body={"sku": "none", "email": "a@x.com"})]
    assert checkouts.count(429) >= 10, checkouts
    assert set(checkouts) <= {404, 429}, checkouts  # the app answers "no such product" to the rest
    assert request("127.0.0.2", port, "POST", "/api/v1/orders", {"sku": "none", "email": "b@x.com"})[0] == 404
    # Probes are never limited.
    assert request("127.0.0.1", port, "GET", "/healthz")[0] == 200


def test_static_files_come_from_disk(stack):
    status, headers, body = request("127.0.0.1", stack.port, "GET", "/static/css/probe.css")
    assert (status, body) == (200, "/* served by nginx */\n")
    assert "max-age=604800" in headers.get_all("Cache-Control")


def test_uploaded_images_come_from_disk_as_images_only(stack):
    status, headers, body = request("127.0.0.1", stack.port, "GET", "/media/products/renditions/7-card.webp")
    assert status == 200 and body.startswith("RIFF")
    assert headers["Content-Type"] == "image/webp" and headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=2592000" in headers.get_all("Cache-Control")
    # A file that is no image is never served as a page a browser would run.
    status, headers, _ = request("127.0.0.1", stack.port, "GET", "/media/products/page.html")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert request("127.0.0.1", stack.port, "GET", "/media/products/missing.png")[0] == 404


def test_the_app_sees_the_client_address_nginx_saw_not_a_forged_one(stack):
    product = product_with_keys(keys=10, per_buyer_limit=1, limit_by_ip=True)
    port = stack.port

    def buy(source: str, email: str, headers: dict | None = None) -> tuple[int, str]:
        status, _, body = request(source, port, "POST", "/api/v1/orders", {"sku": product.sku, "email": email}, headers)
        return status, json.loads(body).get("error", "")

    assert buy("127.0.0.2", "first@x.com") == (202, "")
    # Same address, another email: the address's share is used up.
    assert buy("127.0.0.2", "second@x.com") == (409, "limit_exceeded")
    # A forged header does not make it another client.
    assert buy("127.0.0.2", "third@x.com", {"X-Forwarded-For": "203.0.113.9"}) == (409, "limit_exceeded")
    # Another address is another client.
    assert buy("127.0.0.3", "fourth@x.com") == (202, "")


def test_big_bodies_are_refused_except_for_the_admin_upload(stack):
    port = stack.port
    big = {"sku": "x", "email": "a@x.com", "padding": "x" * (2 * 1024 * 1024)}
    status, headers, text = request("127.0.0.4", port, "POST", "/api/v1/orders", big)
    assert status == 413
    # The API's JSON error, as the app itself answers past DATA_UPLOAD_MAX_MEMORY_SIZE.
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(text) == {"error": "request_too_large", "detail": "The request body is too large."}
    # The admin's key upload takes files this large (streamed to the app, which
    # answers; not 413); the rest of the admin does not.
    assert request("127.0.0.4", port, "POST", "/admin/catalog/product/1/upload-keys/", big)[0] != 413
    assert request("127.0.0.4", port, "POST", "/admin/login/", big)[0] == 413
    # The product and shop settings forms take an image of up to IMAGE_UPLOAD_MAX_BYTES (5 MiB).
    image_sized = {"padding": "x" * (5 * 1024 * 1024)}
    assert request("127.0.0.4", port, "POST", "/admin/catalog/product/1/change/", image_sized)[0] != 413
    assert request("127.0.0.4", port, "POST", "/admin/core/shopsettings/add/", image_sized)[0] != 413
    too_big = {"padding": "x" * (7 * 1024 * 1024)}
    assert request("127.0.0.4", port, "POST", "/admin/catalog/product/1/change/", too_big)[0] == 413
