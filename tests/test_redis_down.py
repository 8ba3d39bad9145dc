"""Redis stopped during a sale (issue 4): pages still render from each web
process's last good copy, checkout answers 503 sale_paused with Retry-After,
nothing is sold; Redis back (empty): checkout stays paused until warm_stock
rebuilds the gate, then reopens without overselling.

The shared Redis other runs use is never stopped: the test starts its own
redis-server on a free port and points the app (gunicorn, manage.py) at it."""

import http.cookiejar
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest
import redis

from apps.catalog.models import Product
from apps.catalog.tests.factories import CategoryFactory
from apps.orders.models import Order
from apps.orders.tests import processes  # not test_environment itself: pytest would collect a test_* name
from apps.orders.tests.processes import GunicornServer
from apps.orders.tests.support import product_with_keys
from testing.processes import ROOT, free_port
from testing.redis_server import RedisServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


@pytest.fixture
def private_redis():
    """A throwaway redis-server that keeps nothing on disk: a restart comes back empty."""
    server = RedisServer().start()
    yield server
    server.remove()


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=processes.test_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def persist_queued(env: dict) -> int:
    out = manage(
        env,
        "shell",
        "-c",
        "from apps.orders.services.persistence import order_persist_queued; print(order_persist_queued())",
    )
    return int(out.strip().splitlines()[-1])


@dataclass
class Response:
    status_code: int
    text: str
    headers: dict
    url: str

    def json(self) -> dict:
        return json.loads(self.text)


def fetch(
    url: str,
    *,
    json_body: dict | None = None,
    form: dict | None = None,
    headers: dict | None = None,
    opener: urllib.request.OpenerDirector | None = None,
) -> Response:
    """One HTTP request (redirects followed); an error status is an answer too."""
    data, all_headers = None, dict(headers or {})
    if json_body is not None:
        data, all_headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, headers=all_headers)
    try:
        response = (opener or urllib.request.build_opener()).open(request, timeout=10)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        return Response(response.status, response.read().decode(errors="replace"), dict(response.headers), response.url)


def checkout(base: str, sku: str, email: str) -> Response:
    return fetch(f"{base}/api/v1/orders", json_body={"sku": sku, "email": email, "quantity": 1})


def form_checkout(base: str, sku: str, email: str) -> Response:
    """The storefront's purchase form, as a browser sends it (CSRF cookie and token)."""
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    english = {"Accept-Language": "en"}
    page = fetch(f"{base}/p/{sku}", headers=english, opener=browser)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return fetch(
        f"{base}/p/{sku}/buy",
        form={"csrfmiddlewaretoken": token, "email": email, "quantity": "1", "idempotency_key": "form-1"},
        headers={"Referer": f"{base}/p/{sku}", **english},
        opener=browser,
    )


def test_redis_down_pages_render_checkout_pauses_and_reopens_after_warm_up(private_redis):
    category = CategoryFactory(name="Games", slug="games")
    product = product_with_keys(keys=5, warm=False, title="Original title", category=category, per_buyer_limit=1)
    env = {
        "REDIS_URL": private_redis.url,
        "GATE_REDIS_URL": private_redis.url,
        "TEST_CELERY_BROKER_URL": private_redis.url,
    }
    # One worker, so the pages read before the outage are in the process that serves the ones after it.
    server = GunicornServer(workers=1, threads=4, extra_env=env).start()
    try:
        base = server.url
        assert "warmed, stock 5" in manage(env, "warm_stock", "--lang", "en", "--sku", product.sku)
        for path in ("/", "/c/games", f"/p/{product.sku}"):
            assert fetch(base + path).status_code == 200
        first = checkout(base, product.sku, "first@x.com")
        assert first.status_code == 202, first.text
        assert persist_queued(env) == 1

        private_redis.stop()
        # Changed behind the cache's back: a page showing the old title was not read from MariaDB.
        Product.objects.filter(pk=product.pk).update(title="Changed in the database")

        page = fetch(f"{base}/p/{product.sku}", headers={"Accept-Language": "en"})
        assert page.status_code == 200
        assert "Original title" in page.text and "Changed in the database" not in page.text
        assert "badge-paused" in page.text
        assert fetch(f"{base}/").status_code == 200
        assert fetch(f"{base}/c/games").status_code == 200

        started = time.monotonic()
        for n in range(5):
            refused = checkout(base, product.sku, f"down{n}@x.com")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "sale_paused"
            assert int(refused.headers["Retry-After"]) >= 1
        assert time.monotonic() - started < 5, "a dead Redis must fail fast, not hang the request"

        form = form_checkout(base, product.sku, "form@x.com")
        assert form.status_code == 200 and form.url.endswith(f"/p/{product.sku}"), (form.status_code, form.url)
        assert "The sale is paused for a moment" in form.text

        # The order page remembers the link's token in the session: a write Redis cannot take.
        order_page = fetch(f"{base}/orders/{first.json()['order_no']}?token={first.json()['access_token']}")
        assert order_page.status_code == 200, order_page.status_code

        assert fetch(f"{base}/healthz").status_code == 200
        ready = fetch(f"{base}/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] != "ok"
        assert Order.objects.filter(product=product).count() == 1

        # Back, but empty: stock is unknown, so checkout stays closed until the warm-up.
        private_redis.start()
        for n in range(3):
            still = checkout(base, product.sku, f"early{n}@x.com")
            assert (still.status_code, still.json()["error"]) == (503, "sale_paused"), still.text
        assert "warmed, stock 4" in manage(env, "warm_stock", "--lang", "en", "--sku", product.sku)

        answers = [checkout(base, product.sku, f"after{n}@x.com") for n in range(8)]
        codes = [(a.status_code, a.json().get("error")) for a in answers]
        assert codes == [(202, None)] * 4 + [(409, "sold_out")] * 4, codes
        assert persist_queued(env) == 4
        assert Order.objects.filter(product=product).count() == 5  # = keys uploaded: nothing oversold
        assert fetch(f"{base}/readyz").status_code == 200
    finally:
        server.stop()


def test_sessions_survive_an_unreachable_redis(settings):
    """A session write while Redis is down is lost (logged), not a 500."""
    from django.contrib.sessions.backends.cache import SessionStore as DjangoCacheStore

    from apps.core.sessions import SessionStore

    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    stock = DjangoCacheStore()
    stock["grant"] = "x"
    with pytest.raises(redis.RedisError):
        stock.save()  # what Django's own store does: the request would answer 500
    session = SessionStore()
    session["grant"] = "x"
    session.save()
    assert session.session_key
    assert SessionStore(session.session_key).load() == {}
    session.delete()


def test_the_last_good_copy_ages_out_and_stays_bounded(monkeypatch):
    from apps.core import last_good

    now = [1000.0]
    monkeypatch.setattr(last_good.time, "monotonic", lambda: now[0])
    copies = last_good.LastGood(max_entries=2)
    copies.remember("a", 1)
    now[0] += 10
    assert copies.recall("a", max_age=10) == 1
    assert copies.recall("a", max_age=9) is None
    copies.remember("b", 2)
    copies.remember("a", 1)  # served again: now the newest
    copies.remember("c", 3)
    assert [copies.recall(k, max_age=60) for k in "abc"] == [1, None, 3]
