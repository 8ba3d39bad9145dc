"""The buyer's order pages: only a token holder (link or session grant) or a
successful lookup sees an order; everyone else gets 404, and the lookup page
answers a wrong pair exactly as it answers an unknown order."""

import re
from decimal import Decimal

import pytest
from django.test import Client
from playwright.sync_api import expect

from apps.cardkeys.tests.factories import CardKeyFactory
from apps.orders.models import Order
from apps.orders.status_records import order_status_records_drop_rollback_unsafe
from apps.orders.tests.factories import OrderFactory

Status = Order.Status


@pytest.fixture(autouse=True)
def _english(settings):
    settings.LANGUAGE_CODE = "en"


def _grant_in_session(client, order_no: str, token: str) -> None:
    from apps.orders.grants import order_grant_token

    session = client.session
    order_grant_token(session=session, order_no=order_no, token=token)
    session.save()


def _visible_state(html: str) -> list[str]:
    """The data-state panels rendered without `hidden`."""
    return re.findall(r'data-state="([a-z_]+)"\s*>', html)


# --- order page access


def _asks_for_email(response) -> bool:
    """The order page's answer to a browser that may not open the order: the
    lookup form (issue 13: not a 404), never the order itself."""
    html = response.content.decode()
    return response.status_code == 200 and 'name="email"' in html and 'id="order"' not in html


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["", "?token=", "?token=wrong-token"])
def test_the_order_page_asks_for_the_email_without_the_right_token(client, query):
    order, _ = OrderFactory.create_with_token()
    assert _asks_for_email(client.get(f"/orders/{order.order_no}{query}"))
    assert client.get(f"/orders/{order.order_no}/status{query}").status_code == 404


@pytest.mark.django_db
def test_another_orders_token_does_not_open_an_order(client):
    order, _ = OrderFactory.create_with_token()
    _, other_token = OrderFactory.create_with_token()
    assert _asks_for_email(client.get(f"/orders/{order.order_no}?token={other_token}"))
    _grant_in_session(client, order.order_no, other_token)
    assert _asks_for_email(client.get(f"/orders/{order.order_no}"))


@pytest.mark.django_db
def test_an_unknown_order_asks_for_the_email_too(client):
    assert _asks_for_email(client.get("/orders/261122-1-NOSUCHORDER0?token=x"))


@pytest.mark.django_db
def test_the_order_page_opens_with_the_token_in_the_link(client):
    order, token = OrderFactory.create_with_token(quantity=2, amount=Decimal("19.80"))
    response = client.get(f"/orders/{order.order_no}?token={token}")
    assert response.status_code == 200
    html = response.content.decode()
    assert order.order_no in html and "¥19.80" in html
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_the_order_page_opens_with_a_session_grant(client):
    order, token = OrderFactory.create_with_token()
    _grant_in_session(client, order.order_no, token)
    assert client.get(f"/orders/{order.order_no}").status_code == 200


@pytest.mark.django_db
def test_a_visit_with_the_token_is_remembered_in_the_session(client):
    order, token = OrderFactory.create_with_token()
    assert client.get(f"/orders/{order.order_no}?token={token}").status_code == 200
    remembered = client.session["order_tokens"]
    assert list(remembered) == [order.order_no] and remembered[order.order_no] != token  # sealed
    assert client.get(f"/orders/{order.order_no}").status_code == 200


# --- what the page says


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "message"),
    [
        (Status.AWAITING_PAYMENT, "Waiting for your payment."),
        (Status.PAID, "Payment received. Your keys are on the way."),
        (Status.EXPIRED, "This order expired before a payment arrived."),
        (Status.REFUND_PENDING, "we are refunding your payment"),
        (Status.REFUNDED, "Your payment has been refunded."),
        (Status.NEEDS_ATTENTION, "We are looking into this order. Your payment is safe."),
    ],
)
def test_each_state_shows_its_own_message(client, status, message):
    order, token = OrderFactory.create_with_token(status=status)
    html = client.get(f"/orders/{order.order_no}?token={token}").content.decode()
    assert message in html
    assert _visible_state(html) == [status]


@pytest.mark.django_db
def test_an_order_awaiting_payment_offers_its_methods_and_the_sandbox_leads_to_its_page(client):
    from django.utils import timezone

    order, token = OrderFactory.create_with_token(reserved_until=timezone.now() + timezone.timedelta(minutes=15))
    html = client.get(f"/orders/{order.order_no}?token={token}").content.decode()
    assert f'action="/orders/{order.order_no}/pay?token={token}"' in html
    assert 'name="method" value="sandbox"' in html and "Pay within" in html
    assert f'action="/orders/{order.order_no}/cancel?token={token}"' in html
    response = client.post(f"/orders/{order.order_no}/pay?token={token}", {"method": "sandbox"})
    assert response.status_code == 302 and response["Location"] == f"/pay/sandbox/{order.order_no}?token={token}"
    refused = client.post(f"/orders/{order.order_no}/pay?token={token}", {"method": "stripe"})
    assert refused.status_code == 302 and refused["Location"] == f"/orders/{order.order_no}?token={token}"
    assert Client().post(f"/orders/{order.order_no}/pay?token=wrong", {"method": "sandbox"}).status_code == 404


@pytest.mark.django_db
def test_without_an_enabled_provider_the_page_shows_the_order_without_a_pay_button(client, settings):
    settings.PAYMENT_PROVIDERS = []
    order, token = OrderFactory.create_with_token()
    response = client.get(f"/orders/{order.order_no}?token={token}")
    assert response.status_code == 200
    assert 'name="method"' not in response.content.decode()


@pytest.mark.django_db
def test_a_paid_order_offers_no_pay_button(client):
    order, token = OrderFactory.create_with_token(status=Status.PAID)
    html = client.get(f"/orders/{order.order_no}?token={token}").content.decode()
    assert 'name="method"' not in html and "/cancel" not in html
    assert "orders/order.js" in html and f"/orders/{order.order_no}/status?token={token}" in html


@pytest.mark.django_db
def test_a_delivered_order_shows_its_keys_with_copy_buttons(client):
    order, token = OrderFactory.create_with_token(status=Status.DELIVERED, quantity=2, amount=Decimal("19.80"))
    CardKeyFactory(sold=True, order=order, product=order.product, secret="AAAA-1111-BBBB")
    CardKeyFactory(sold=True, order=order, product=order.product, secret="CCCC-2222-DDDD")

    html = client.get(f"/orders/{order.order_no}?token={token}").content.decode()

    assert _visible_state(html) == [Status.DELIVERED]
    assert "<code>AAAA-1111-BBBB</code>" in html and "<code>CCCC-2222-DDDD</code>" in html
    assert 'data-copy="AAAA-1111-BBBB"' in html
    assert '<meta http-equiv="refresh"' not in html  # nothing more will change


@pytest.mark.django_db
def test_keys_are_not_shown_before_delivery(client):
    order, token = OrderFactory.create_with_token(status=Status.PAID)
    CardKeyFactory(sold=True, order=order, product=order.product, secret="EEEE-3333-FFFF")
    html = client.get(f"/orders/{order.order_no}?token={token}").content.decode()
    assert "EEEE-3333-FFFF" not in html
    assert '<meta http-equiv="refresh"' in html  # without JavaScript the page refreshes


@pytest.mark.django_db
def test_the_status_endpoint_answers_the_api_snapshot(client):
    order, token = OrderFactory.create_with_token(status=Status.DELIVERED)
    CardKeyFactory(sold=True, order=order, product=order.product, secret="GGGG-4444-HHHH")
    response = client.get(f"/orders/{order.order_no}/status?token={token}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "delivered" and body["keys"] == ["GGGG-4444-HHHH"]
    assert body["amount"] == "9.90" and body["currency"] == "CNY"
    api = client.get(f"/api/v1/orders/{order.order_no}", HTTP_X_ORDER_TOKEN=token)
    assert api.json() == body


# --- lookup

NO_MATCH = "No order matches this order number and email."


def _lookup(client, order_no, email):
    return client.post("/orders/lookup", {"order_no": order_no, "email": email})


def _without_csrf(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


@pytest.mark.django_db
def test_lookup_with_the_right_pair_opens_the_order(client):
    order, _ = OrderFactory.create_with_token(buyer_email="buyer@example.com")
    response = _lookup(client, f" {order.order_no} ", "  Buyer@Example.COM ")
    assert response.status_code == 302
    assert response["Location"] == f"/orders/{order.order_no}"

    page = client.get(response["Location"])
    assert page.status_code == 200
    assert client.get(f"/orders/{order.order_no}/status").json()["order_no"] == order.order_no
    # Paying works from a lookup too, through the session.
    html = page.content.decode()
    assert f'action="/orders/{order.order_no}/pay"' in html
    response = client.post(f"/orders/{order.order_no}/pay", {"method": "sandbox"})
    assert response["Location"] == f"/pay/sandbox/{order.order_no}"
    assert client.get(f"/pay/sandbox/{order.order_no}").status_code == 200


@pytest.mark.django_db
def test_a_wrong_pair_and_an_unknown_order_get_the_same_answer(client):
    order, _ = OrderFactory.create_with_token(buyer_email="buyer@example.com")

    wrong_pair = _lookup(client, order.order_no, "someone@example.com")
    unknown = _lookup(client, "261122-1-NOSUCHORDER0", "buyer@example.com")

    assert wrong_pair.status_code == unknown.status_code == 200
    assert NO_MATCH in wrong_pair.content.decode()
    # Identical pages apart from the echoed input and the CSRF token.
    strip = lambda r, *values: _without_csrf(r.content.decode()).replace(values[0], "").replace(values[1], "")  # noqa: E731
    assert strip(wrong_pair, order.order_no, "someone@example.com") == strip(
        unknown, "261122-1-NOSUCHORDER0", "buyer@example.com"
    )
    assert _asks_for_email(client.get(f"/orders/{order.order_no}"))


@pytest.mark.django_db
def test_a_lookup_grant_follows_the_order_email(client):
    order, _ = OrderFactory.create_with_token(buyer_email="buyer@example.com")
    assert _lookup(client, order.order_no, "buyer@example.com").status_code == 302
    Order.objects.filter(pk=order.pk).update(buyer_email="new@example.com")
    assert _asks_for_email(client.get(f"/orders/{order.order_no}"))


@pytest.mark.django_db
def test_the_lookup_page_renders_its_form(client):
    response = client.get("/orders/lookup")
    assert response.status_code == 200
    assert 'name="order_no"' in response.content.decode() and 'name="email"' in response.content.decode()


@pytest.mark.django_db
def test_a_lookup_with_a_malformed_email_explains_the_field(client):
    response = _lookup(client, "261122-1-ABC", "not-an-email")
    assert response.status_code == 200
    assert NO_MATCH not in response.content.decode()
    assert "Enter a valid email address." in response.content.decode()


# --- the whole buyer path through these pages


@pytest.mark.django_db(transaction=True)
def test_checkout_to_keys_through_the_order_page(client, live_server, settings):
    """Checkout → the page shows the queued order → persisted → the sandbox pays
    over real HTTP to the webhook → fulfilled → the page shows the key."""
    from unittest import mock

    from apps.orders.services import checkout, fulfilment, persistence
    from apps.orders.tasks import fulfil_order_task
    from apps.orders.tests.support import product_with_keys
    from apps.payments.sandbox_server import notification_deliver, sandbox_notification_deliver_task

    settings.SITE_URL = live_server.url
    product = product_with_keys(keys=1)
    result = checkout.order_checkout(sku=product.sku, email="buyer@example.com", quantity=1, idempotency_key=None)
    page = f"/orders/{result.order_no}?token={result.access_token}"

    html = client.get(page).content.decode()
    assert _visible_state(html) == [Status.QUEUED]
    assert "Your order is being placed." in html and 'name="method" value="sandbox"' in html
    assert _asks_for_email(Client().get(f"/orders/{result.order_no}?token=wrong"))  # another browser

    persistence.order_persist_queued(product_ids=[product.id])
    assert client.get(f"/orders/{result.order_no}/status").json()["status"] == Status.AWAITING_PAYMENT

    with (
        mock.patch.object(sandbox_notification_deliver_task, "delay") as sent,
        mock.patch.object(fulfil_order_task, "delay") as fulfil,
    ):
        assert client.post(f"/pay/sandbox/{result.order_no}", {"pay": "1"}).status_code == 302
        assert notification_deliver(fields=sent.call_args.kwargs["fields"]) == 200
    assert client.get(f"/orders/{result.order_no}/status").json()["status"] == Status.PAID

    (order_id,) = fulfil.call_args.args
    fulfilment.order_fulfil(order_id=order_id)
    html = client.get(f"/orders/{result.order_no}").content.decode()
    assert _visible_state(html) == [Status.DELIVERED]
    assert f"<code>{product.sku}-KEY-000000</code>" in html


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_order_page_follows_the_order_and_copies_its_keys(live_server, browser):
    """In headless Chromium: the page's script polls the status, switches the
    message as the order moves on, then lists the key and copies it."""
    order, token = OrderFactory.create_with_token()
    orders = Order.objects.filter(pk=order.pk)

    context = browser.new_context(locale="en-US")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.goto(f"{live_server.url}/orders/{order.order_no}?token={token}")
    expect(page.locator('[data-state="awaiting_payment"]')).to_be_visible()

    # Changed behind the services' back: drop the poll's status record as they do.
    orders.update(status=Status.PAID)
    order_status_records_drop_rollback_unsafe(order_nos=[order.order_no])
    expect(page.locator('[data-state="paid"]')).to_be_visible(timeout=8000)
    expect(page.locator('[data-state="awaiting_payment"]')).to_be_hidden()

    CardKeyFactory(sold=True, order=order, product=order.product, secret="KEY-TO-COPY-42")
    orders.update(status=Status.DELIVERED)
    order_status_records_drop_rollback_unsafe(order_nos=[order.order_no])
    expect(page.locator("[data-keys] code")).to_have_text(["KEY-TO-COPY-42"], timeout=8000)
    page.locator("[data-keys] button").click()
    expect(page.locator("[data-keys] button")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "KEY-TO-COPY-42"


@pytest.mark.django_db
def test_an_undelivered_order_page_lists_no_keys_at_all(client):
    """Not even hidden placeholders: `order.keys` on the snapshot dict once
    listed the dict's own field names in the (hidden) key list."""
    order, token = OrderFactory.create_with_token()
    html = client.get(f"/orders/{order.order_no}?token={token}").content.decode()
    keys_list = html.split("data-keys>", 1)[1].split("</ul>", 1)[0]
    assert "<code>" not in keys_list


@pytest.mark.django_db
def test_a_qr_method_shows_its_code_drawn_on_the_page(client, monkeypatch):
    from apps.payments.providers.base import PaymentStart
    from apps.payments.providers.sandbox import SandboxProvider

    monkeypatch.setattr(
        SandboxProvider, "payment_start", lambda self, request: PaymentStart(qr_code="weixin://wxpay/bizpayurl?pr=t")
    )
    order, token = OrderFactory.create_with_token()
    response = client.post(f"/orders/{order.order_no}/pay?token={token}", {"method": "sandbox"})
    html = response.content.decode()
    assert response.status_code == 200
    assert (
        '<figure class="pay-qr">' in html
        and "<svg" in html
        and "http" not in html.split('<figure class="pay-qr">')[1][:200]
    )


@pytest.mark.django_db(transaction=True)
def test_the_buyer_cancels_from_the_order_page(client, monkeypatch):
    from apps.orders.services import checkout, persistence
    from apps.orders.tests.support import product_with_keys

    monkeypatch.setattr("apps.payments.tasks.payment_close_task.delay", lambda order_no: None)
    product = product_with_keys(keys=1)
    result = checkout.order_checkout(sku=product.sku, email="buyer@example.com", quantity=1)
    persistence.order_persist_queued()
    page = f"/orders/{result.order_no}?token={result.access_token}"

    response = client.post(f"/orders/{result.order_no}/cancel?token={result.access_token}")

    assert response.status_code == 302 and response["Location"] == page
    html = client.get(page).content.decode()
    assert _visible_state(html) == [Status.CANCELLED] and "You cancelled this order." in html
    assert 'name="method"' not in html
    again = client.post(f"/orders/{result.order_no}/cancel?token={result.access_token}", follow=True)
    assert _visible_state(again.content.decode()) == [Status.CANCELLED]


@pytest.mark.django_db(transaction=True)
def test_a_queued_order_keeps_its_methods_when_the_page_shows_it_awaiting_payment(client):
    """The page's script switches the panel from queued to awaiting payment
    without a reload: both panels carry the methods, only the second cancel."""
    from apps.orders.services.checkout import order_checkout
    from apps.orders.tests.support import product_with_keys

    product = product_with_keys(keys=1)
    result = order_checkout(sku=product.sku, email="buyer@example.com", quantity=1)  # queued, in Redis only
    html = client.get(f"/orders/{result.order_no}?token={result.access_token}").content.decode()
    queued, awaiting = (
        html.split(f'data-state="{state}"')[1].split('<div class="state')[0] for state in ("queued", "awaiting_payment")
    )
    assert 'name="method" value="sandbox"' in queued and 'name="method" value="sandbox"' in awaiting
    assert "/cancel" not in queued and "/cancel" in awaiting
    assert "How to pay" not in html  # the template's comment stays a comment
