"""The buyer's way back to an order (issue 13, buyer side): the delivery mail's
signed link opens the order in any browser, an order address without its
token asks for the email instead of a 404, "my orders in this browser", the
lookup page's errors, the unpaid-limit message's link, and dates that say
their timezone."""

import re
import time
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.test import Client
from django.utils import translation

from apps.cardkeys.tests.factories import CardKeyFactory
from apps.catalog.tests.factories import ProductFactory
from apps.orders import mail as order_mail
from apps.orders.grants import order_grant_token
from apps.orders.models import Order
from apps.orders.order_links import order_link_path
from apps.orders.tests.factories import OrderFactory
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key

Status = Order.Status


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


def _delivered_order(**fields) -> tuple[Order, str]:
    order, token = OrderFactory.create_with_token(status=Status.DELIVERED, **fields)
    CardKeyFactory(sold=True, order=order, product=order.product, secret="MAIL-KEY-0001")
    return order, token


def _mail_link(order: Order) -> str:
    order_mail.order_keys_email_send(order_id=order.id)
    (message,) = mail.outbox
    (link,) = re.findall(r"https?://\S+", message.body)
    return link


def _lookup_prefilled(response, order_no: str) -> bool:
    html = response.content.decode()
    return 'name="email"' in html and re.search(rf'name="order_no"[^>]*value="{re.escape(order_no)}"', html) is not None


# --- 1. the mail link


@pytest.mark.django_db(transaction=True)
def test_the_mail_link_opens_the_order_with_its_keys_in_a_fresh_browser(settings):
    settings.SITE_URL = "https://shop.example"
    order, _ = _delivered_order()
    link = _mail_link(order)
    assert link.startswith(f"https://shop.example/orders/{order.order_no}/open/")

    fresh = Client()  # another browser: no session, no token
    response = fresh.get(link.removeprefix("https://shop.example"))
    # The signature leaves the address bar: the page is the clean order page.
    assert response.status_code == 302 and response["Location"] == f"/orders/{order.order_no}"
    page = fresh.get(response["Location"])
    assert page.status_code == 200 and "MAIL-KEY-0001" in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_mail_is_otherwise_byte_for_byte_what_it_was(settings):
    settings.SITE_URL = "https://shop.example"
    # An English buyer's order: the mail is written in the order's language.
    order, _ = _delivered_order(product=ProductFactory(title="Steam 100"), language="en")
    link = _mail_link(order)
    assert mail.outbox[0].body == (
        f"Thank you for your order {order.order_no} (Steam 100).\n\n"
        "Your keys:\n\n  MAIL-KEY-0001\n\n"
        f"You can see them again on your order page: {link}\n"
    )


@pytest.mark.django_db
def test_a_tampered_mail_link_lands_on_the_lookup_page_with_the_number_filled_in(client):
    order, _ = _delivered_order()
    path = order_link_path(order_no=order.order_no)
    response = client.get(path[:-3] + "xyz", follow=True)
    assert response.redirect_chain[-1][0].startswith("/orders/lookup")
    assert _lookup_prefilled(response, order.order_no)
    assert "This link is not valid" in response.content.decode()
    # Another order's signature opens nothing either.
    other, _ = _delivered_order()
    signature = order_link_path(order_no=other.order_no).rsplit("/", 1)[1]
    response = client.get(f"/orders/{order.order_no}/open/{signature}", follow=True)
    assert _lookup_prefilled(response, order.order_no) and "MAIL-KEY-0001" not in response.content.decode()


@pytest.mark.django_db
def test_an_expired_mail_link_says_so_and_asks_for_the_email(client, settings):
    settings.ORDER_LINK_MAX_AGE_DAYS = 30
    order, _ = _delivered_order()
    with mock.patch("time.time", return_value=time.time() - 31 * 24 * 3600):
        path = order_link_path(order_no=order.order_no)
    response = client.get(path, follow=True)
    assert _lookup_prefilled(response, order.order_no)
    assert "This link has expired" in response.content.decode()
    assert "MAIL-KEY-0001" not in response.content.decode()


# --- 1. an order address without its token


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["", "?token=", "?token=wrong-token"])
def test_an_order_address_without_its_token_asks_for_the_email(client, query):
    order, _ = OrderFactory.create_with_token()
    response = client.get(f"/orders/{order.order_no}{query}")
    assert response.status_code == 200
    assert _lookup_prefilled(response, order.order_no)
    assert "enter the email you bought with" in response.content.decode()
    # The JSON endpoints keep their 404 (the API's contract).
    assert client.get(f"/orders/{order.order_no}/status{query}").status_code == 404
    assert client.get(f"/api/v1/orders/{order.order_no}{query}").status_code == 404


@pytest.mark.django_db
def test_an_unknown_order_gets_the_same_answer_as_a_known_one(client):
    order, _ = OrderFactory.create_with_token()
    known = client.get(f"/orders/{order.order_no}").content.decode()
    unknown = client.get("/orders/261122-1-NOSUCHORDER0").content.decode()

    def strip(html: str, number: str) -> str:
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html).replace(number, "")

    assert strip(known, order.order_no) == strip(unknown, "261122-1-NOSUCHORDER0")


# --- 2. my orders in this browser


def _grant(client, order: Order, token: str) -> None:
    session = client.session
    order_grant_token(session=session, order_no=order.order_no, token=token)
    session.save()


@pytest.mark.django_db
def test_my_orders_lists_this_browsers_orders_newest_first(client):
    product = ProductFactory(title="Steam 50")
    older, older_token = OrderFactory.create_with_token(product=product, quantity=2)
    Order.objects.filter(pk=older.pk).update(created_at=datetime(2026, 11, 28, 3, 0, tzinfo=UTC))
    newer, newer_token = _delivered_order()
    someone_elses, _ = OrderFactory.create_with_token()
    _grant(client, older, older_token)
    _grant(client, newer, newer_token)

    html = client.get("/orders/mine").content.decode()
    rows = re.findall(r'<tr class="my-order".*?</tr>', html, re.S)
    assert [newer.order_no in rows[0], older.order_no in rows[1]] == [True, True] and len(rows) == 2
    assert someone_elses.order_no not in html
    assert "Steam 50" in rows[1] and "¥" in rows[1] and ">2<" in rows[1]
    assert "Awaiting payment" in rows[1] and "Delivered" in rows[0]
    assert "Nov 28, 2026, 11:00 UTC+8" in rows[1]  # the shop's time zone, said
    assert f'href="/orders/{older.order_no}"' in rows[1]
    # A fresh browser has none.
    assert "You have no orders in this browser yet." in Client().get("/orders/mine").content.decode()


@pytest.mark.django_db
def test_an_order_opened_by_lookup_joins_the_list(client):
    order, _ = OrderFactory.create_with_token(buyer_email="buyer@example.com")
    client.post("/orders/lookup", {"order_no": order.order_no, "email": "buyer@example.com"})
    assert order.order_no in client.get("/orders/mine").content.decode()


@pytest.mark.django_db
def test_every_page_links_to_my_orders_in_the_header(client):
    for path in ["/", "/orders/lookup"]:
        header = client.get(path).content.decode().split("</header>")[0]
        assert 'href="/orders/mine"' in header


# --- 3. the lookup page


@pytest.mark.django_db
def test_lookup_errors_show_as_errors_in_both_languages(client):
    response = client.post("/orders/lookup", {"order_no": "", "email": "not-an-email"})
    html = response.content.decode()
    assert re.search(r'class="field-error"[^>]*>\s*This field is required', html)
    assert re.search(r'class="field-error"[^>]*>\s*Enter a valid email address', html)
    assert 'aria-invalid="true"' in html
    response = client.post("/orders/lookup", {"order_no": "261122-1-X", "email": "a@example.com"})
    assert re.search(r'class="form-errors"[^>]*>.*No order matches', response.content.decode(), re.S)
    with translation.override("zh-hans"):
        zh = client.post(
            "/orders/lookup", {"order_no": "261122-1-X", "email": "a@example.com"}, HTTP_ACCEPT_LANGUAGE="zh-hans"
        ).content.decode()
    assert re.search(r'class="form-errors"[^>]*>.*没有与该订单号和邮箱匹配的订单', zh, re.S)


@pytest.mark.django_db
def test_the_lookup_page_is_styled_like_the_shop(client):
    html = client.get("/orders/lookup?order_no=261122-1-ABC").content.decode()
    assert 'class="lookup panel"' in html and 'class="form-stack"' in html
    assert re.search(r'name="order_no"[^>]*value="261122-1-ABC"', html)


# --- 7. the unpaid-limit message


@pytest.mark.django_db(transaction=True)
def test_the_unpaid_limit_message_links_to_the_open_order_this_browser_knows():
    from apps.orders.tests.support import product_with_keys

    product = product_with_keys(keys=5, max_unpaid_per_buyer=1)
    buyer = Client()
    first = buyer.post(f"/p/{product.sku}/buy", {"email": "a@example.com", "quantity": "1"})
    order_no = first["Location"].rsplit("/", 1)[1]
    second = buyer.post(f"/p/{product.sku}/buy", {"email": "a@example.com", "quantity": "1"}, follow=True)
    html = second.content.decode()
    assert "You already have an unpaid order" in html
    assert re.search(rf'class="message error"[^>]*>.*href="/orders/{order_no}"', html, re.S)

    # Another browser, same buyer: it cannot know the order, so the lookup page.
    other = Client().post(f"/p/{product.sku}/buy", {"email": "a@example.com", "quantity": "1"}, follow=True)
    assert re.search(r'class="message error"[^>]*>.*href="/orders/lookup"', other.content.decode(), re.S)


# --- 8. dates carry their timezone


def test_shop_time_says_its_zone_in_english_and_chinese():
    from apps.catalog.templatetags.shop import shop_time

    moment = datetime(2026, 11, 29, 3, 56, tzinfo=UTC)
    with translation.override("en"):
        assert shop_time(moment) == "Nov 29, 2026, 11:56 UTC+8"
    with translation.override("zh-hans"):
        assert shop_time(moment) == "2026-11-29 11:56 (UTC+8)"
    assert django_settings.TIME_ZONE == "Asia/Shanghai"


@pytest.mark.django_db
def test_the_order_page_says_when_it_was_placed_with_its_zone(client):
    order, token = OrderFactory.create_with_token()
    Order.objects.filter(pk=order.pk).update(created_at=datetime(2026, 11, 29, 3, 56, tzinfo=UTC))
    html = client.get(f"/orders/{order.order_no}?token={token}").content.decode()
    assert "Nov 29, 2026, 11:56 UTC+8" in html
    zh = client.get(f"/orders/{order.order_no}", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "2026-11-29 11:56 (UTC+8)" in zh


@pytest.mark.django_db
def test_the_product_page_sale_times_say_their_zone(client):
    product = ProductFactory(sale_starts_at=datetime(2030, 1, 2, 4, 0, tzinfo=UTC))
    stock_redis().set(stock_key(product.id), 5)
    html = client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Sale starts Jan 2, 2030, 12:00 UTC+8" in html


@pytest.mark.django_db
def test_a_product_card_says_when_the_sale_opens_with_its_zone(client):
    product = ProductFactory(title="Soon", sale_starts_at=datetime(2030, 1, 2, 4, 0, tzinfo=UTC))
    stock_redis().set(stock_key(product.id), 5)
    assert "On sale Jan 2, 12:00 UTC+8" in client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "01-02 12:00 (UTC+8)" in client.get("/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()


@pytest.mark.django_db
def test_the_mail_link_grants_under_a_new_session_id(client):
    """As the lookup page: a session id planted before (session fixation) does
    not get the order too."""
    order, _ = _delivered_order()
    client.get("/orders/lookup")
    session = client.session
    session["planted"] = True
    session.save()
    planted = session.session_key
    assert client.get(order_link_path(order_no=order.order_no)).status_code == 302
    assert client.session.session_key != planted
    assert (
        Client(HTTP_COOKIE=f"sessionid={planted}")
        .get(f"/orders/{order.order_no}")
        .content.decode()
        .count("MAIL-KEY-0001")
        == 0
    )


@pytest.mark.django_db(transaction=True)
def test_the_unpaid_limit_message_and_its_link_in_chinese():
    from apps.orders.tests.support import product_with_keys

    product = product_with_keys(keys=5, max_unpaid_per_buyer=1)
    buyer = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    buyer.post(f"/p/{product.sku}/buy", {"email": "a@example.com", "quantity": "1"})
    html = buyer.post(f"/p/{product.sku}/buy", {"email": "a@example.com", "quantity": "1"}, follow=True)
    assert re.search(
        r'class="message error"[^>]*>[^<]*未支付[^<]*<a href="/orders/[^"]+">打开未支付的订单</a>',
        html.content.decode(),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("typed", ["Bob.Smith+shop@Example.com", "j.doe@gmail.com"])
def test_the_mail_link_and_the_lookup_work_for_an_address_as_the_buyer_typed_it(settings, client, typed):
    """Orders keep the address as typed; limits count its normalised form. The
    way back must open the order for either (a capital, a +tag, a dot at
    Gmail)."""
    settings.SITE_URL = "https://shop.example"
    order, _ = _delivered_order(buyer_email=typed)
    link = _mail_link(order)
    fresh = Client()
    response = fresh.get(link.removeprefix("https://shop.example"), follow=True)
    assert "MAIL-KEY-0001" in response.content.decode()

    response = client.post("/orders/lookup", {"order_no": order.order_no, "email": typed}, follow=True)
    assert "MAIL-KEY-0001" in response.content.decode()
