import pytest

from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key

from .support import product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def test_form_checkout_lands_on_the_order_page(client, django_assert_num_queries):
    product = product_with_keys(keys=3)
    page = client.get(f"/p/{product.sku}")
    assert f'action="/p/{product.sku}/buy"' in page.content.decode()
    with django_assert_num_queries(0):  # sessions live in Redis; product info is cached
        response = client.post(f"/p/{product.sku}/buy", {"email": "a@x.com", "quantity": "2", "idempotency_key": "k1"})
    assert response.status_code == 302 and response["Location"].startswith("/orders/")
    order_page = client.get(response["Location"])
    assert order_page.status_code == 200
    assert int(stock_redis().get(stock_key(product.id))) == 1
    # A double submit of the same form is the same order.
    again = client.post(f"/p/{product.sku}/buy", {"email": "a@x.com", "quantity": "2", "idempotency_key": "k1"})
    assert again["Location"] == response["Location"]
    # Another browser cannot open it: it is asked for the email.
    from django.test import Client

    other = Client().get(response["Location"]).content.decode()
    assert 'name="email"' in other and 'id="order"' not in other


def test_refusal_goes_back_with_a_translated_reason(client):
    product = product_with_keys(keys=0)
    response = client.post(
        f"/p/{product.sku}/buy", {"email": "a@x.com", "quantity": "1"}, HTTP_ACCEPT_LANGUAGE="en", follow=True
    )
    assert response.redirect_chain[-1][0] == f"/p/{product.sku}"
    assert "Sold out." in response.content.decode()
    zh = client.post(
        f"/p/{product.sku}/buy", {"email": "a@x.com", "quantity": "1"}, HTTP_ACCEPT_LANGUAGE="zh-hans", follow=True
    )
    assert "Sold out." not in zh.content.decode()


def test_bad_email_is_refused_and_reserves_nothing(client):
    product = product_with_keys(keys=3)
    response = client.post(
        f"/p/{product.sku}/buy", {"email": "nope", "quantity": "1"}, HTTP_ACCEPT_LANGUAGE="en", follow=True
    )
    assert "Enter a valid email address." in response.content.decode()
    assert int(stock_redis().get(stock_key(product.id))) == 3


def test_the_session_remembers_the_order_without_holding_its_token(client):
    """Sessions live in Redis: what they remember must not open the order."""
    from apps.orders.grants import SESSION_TOKENS
    from apps.orders.selectors import order_snapshot_get

    product = product_with_keys(keys=3)
    response = client.post(f"/p/{product.sku}/buy", {"email": "a@x.com", "quantity": "1"})
    order_no = response["Location"].rsplit("/", 1)[-1]
    remembered = client.session[SESSION_TOKENS][order_no]
    assert order_snapshot_get(order_no=order_no, token=remembered) is None
    assert client.get(response["Location"]).status_code == 200  # the sealed grant still opens it
    assert client.get(response["Location"]).status_code == 200
