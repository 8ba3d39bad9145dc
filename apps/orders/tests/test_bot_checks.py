"""Issue 4's honeypot and captcha (apps.orders.bot_checks) on the storefront
form and the JSON API. Real Redis and MariaDB; the captcha's expected answer
is read from its CaptchaStore row, as a person would read the picture."""

import json
import re
import time
import uuid

import pytest
from captcha.models import CaptchaStore
from django.test import Client

from apps.catalog.page_tokens import page_token_new
from apps.stock.selectors import stock_remaining

from .support import product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


@pytest.fixture
def aged_token(monkeypatch):
    """A page token as if the page had been open `seconds` already."""

    def make(product, seconds=120):
        real = time.time()
        with monkeypatch.context() as patch:
            patch.setattr(time, "time", lambda: real - seconds)
            return page_token_new(sku=product.sku)

    return make


def buy(client, product, *, page_token, email="a@x.com", **extra):
    data = {"email": email, "quantity": "1", "idempotency_key": uuid.uuid4().hex, "page_token": page_token, **extra}
    return client.post(f"/p/{product.sku}/buy", data, follow=True, **EN)


def page(client, product) -> str:
    response = client.get(f"/p/{product.sku}", **EN)
    assert response.status_code == 200
    return response.content.decode()


def captcha_on(html: str) -> dict | None:
    """The captcha's key on a rendered page and its right answer, or None."""
    match = re.search(r'name="captcha_0" value="([0-9a-f]+)"', html)
    if match is None:
        return None
    return {"captcha_0": match.group(1), "captcha_1": CaptchaStore.objects.get(hashkey=match.group(1)).response}


def test_the_form_carries_a_honeypot_people_never_reach_and_no_captcha(client):
    product = product_with_keys(keys=3)
    html = page(client, product)
    honeypot = re.search(r'<div class="hp-field" aria-hidden="true">(.*?)</div>', html, re.S)
    assert honeypot is not None
    field = re.search(r"<input[^>]*name=\"website\"[^>]*>", honeypot.group(1)).group(0)
    assert 'type="text"' in field and 'tabindex="-1"' in field and 'autocomplete="off"' in field
    assert captcha_on(html) is None and CaptchaStore.objects.count() == 0


def test_a_filled_honeypot_is_refused_reserves_nothing_and_counts_as_a_strike(client):
    product = product_with_keys(keys=3)
    for _ in range(3):
        response = buy(client, product, page_token=page_token_new(sku=product.sku), website="http://buy-cheap.example")
        assert response.redirect_chain[-1][0] == f"/p/{product.sku}"
        assert "Some fields are not valid." in response.content.decode()
    assert stock_remaining(product_id=product.id) == 3
    assert captcha_on(response.content.decode()) is not None


def test_a_clean_first_time_buyer_never_sees_a_captcha(client, django_assert_num_queries, aged_token):
    product = product_with_keys(keys=3, min_page_seconds=2)
    assert captcha_on(page(client, product)) is None
    with django_assert_num_queries(0):  # no captcha row is read or written for a client under the threshold
        response = client.post(
            f"/p/{product.sku}/buy",
            {
                "email": "a@x.com",
                "quantity": "1",
                "idempotency_key": "k1",
                "page_token": aged_token(product),
                "website": "",
            },
        )
    assert response.status_code == 302 and response["Location"].startswith("/orders/")
    assert stock_remaining(product_id=product.id) == 2
    assert captcha_on(page(client, product)) is None
    assert CaptchaStore.objects.count() == 0


def test_after_too_fast_and_forged_attempts_the_form_wants_a_captcha_until_solved(client, aged_token):
    product = product_with_keys(keys=5, min_page_seconds=60)
    # Three strikes: too fast, too fast, a forged token. Each is refused and counted.
    assert "quicker than a person" in buy(client, product, page_token=page_token_new(sku=product.sku)).content.decode()
    assert captcha_on(page(client, product)) is None  # one strike is not yet the threshold
    buy(client, product, page_token=page_token_new(sku=product.sku))
    response = buy(client, product, page_token="forged")
    assert "Please open the product page again" in response.content.decode()
    # Over the threshold: the page the refusal lands on asks for a captcha.
    assert captcha_on(response.content.decode()) is not None

    # A proper page token is no longer enough: without the captcha, refused.
    response = buy(client, product, page_token=aged_token(product))
    assert "Please solve the captcha." in response.content.decode()
    # A wrong answer is refused too, and spends that captcha.
    wrong = captcha_on(response.content.decode())
    wrong["captcha_1"] = "wrong"
    response = buy(client, product, page_token=aged_token(product), **wrong)
    assert "The captcha answer was wrong" in response.content.decode()
    assert not CaptchaStore.objects.filter(hashkey=wrong["captcha_0"]).exists()
    assert stock_remaining(product_id=product.id) == 5

    # The right answer passes, and clears the count: the next page asks nothing.
    solved = captcha_on(response.content.decode())
    response = buy(client, product, page_token=aged_token(product), **solved)
    assert response.redirect_chain[-1][0].startswith("/orders/")
    assert stock_remaining(product_id=product.id) == 4
    assert captcha_on(page(client, product)) is None


def test_strikes_count_per_ip_and_per_device(aged_token):
    product = product_with_keys(keys=5, min_page_seconds=60)
    scalper = Client(REMOTE_ADDR="10.0.0.1")
    page(scalper, product)  # the device cookie
    for _ in range(3):
        buy(scalper, product, page_token="forged")
    assert captcha_on(page(scalper, product)) is not None
    # Someone else elsewhere buys as usual.
    assert captcha_on(page(Client(REMOTE_ADDR="10.0.0.2"), product)) is None
    # The same device from a new address is still asked.
    moved = Client(REMOTE_ADDR="10.0.0.3")
    moved.cookies = scalper.cookies
    assert captcha_on(page(moved, product)) is not None
    # So is a new device behind the same address.
    assert captcha_on(page(Client(REMOTE_ADDR="10.0.0.1"), product)) is not None


def test_strikes_are_forgotten_after_the_window(client, settings):
    settings.BOT_WINDOW_SECONDS = 1
    product = product_with_keys(keys=5, min_page_seconds=60)
    for _ in range(3):
        buy(client, product, page_token="forged")
    assert captcha_on(page(client, product)) is not None
    time.sleep(1.2)
    assert captcha_on(page(client, product)) is None


def test_a_threshold_of_zero_never_asks(client, settings):
    settings.BOT_SOFT_THRESHOLD = 0
    product = product_with_keys(keys=5, min_page_seconds=60)
    for _ in range(4):
        buy(client, product, page_token="forged")
    assert captcha_on(page(client, product)) is None


def order_create(client, body):
    return client.post("/api/v1/orders", data=json.dumps(body), content_type="application/json", **EN)


def test_api_over_the_threshold_answers_captcha_required_and_takes_the_answer_in_the_body(client, aged_token):
    product = product_with_keys(keys=5, min_page_seconds=60)
    for _ in range(3):  # a script that skipped the product API's token
        response = order_create(client, {"sku": product.sku, "email": "a@x.com"})
        assert response.status_code == 400 and response.json()["error"] == "page_token_invalid"

    body = {"sku": product.sku, "email": "a@x.com", "page_token": aged_token(product)}
    refused = order_create(client, body)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "captcha_required",
        "detail": "Please solve the captcha.",
        "captcha_url": "/api/v1/captcha",
    }

    captcha = client.get("/api/v1/captcha").json()
    image = client.get(captcha["image_url"])
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    wrong = order_create(client, {**body, "captcha_key": captcha["captcha_key"], "captcha_value": "nope"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "captcha_invalid"
    assert stock_remaining(product_id=product.id) == 5

    captcha = client.get("/api/v1/captcha").json()
    answer = CaptchaStore.objects.get(hashkey=captcha["captcha_key"]).response
    accepted = order_create(client, {**body, "captcha_key": captcha["captcha_key"], "captcha_value": answer.upper()})
    assert accepted.status_code == 202
    assert stock_remaining(product_id=product.id) == 4
    # Solved: the count is reset, the next order needs no captcha.
    again = order_create(client, {**body, "email": "b@x.com", "page_token": aged_token(product)})
    assert again.status_code == 202
