"""The storefront's purchase form around a flash sale (issue 13): the email can
be typed before the sale opens (only the buy button waits), and a refusal
brings the buyer back to a form that still holds what they typed and the
page token they have been holding (the minimum time on page does not restart)."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog.models import ProductInputField

from .support import product_with_keys

pytestmark = pytest.mark.django_db(transaction=True)


def _form(html: str) -> str:
    match = re.search(r'<form class="purchase".*?</form>', html, re.S)
    assert match, "no purchase form on the page"
    return match.group(0)


def _value(form: str, name: str) -> str | None:
    tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', form)
    assert tag, f"no {name} input"
    value = re.search(r'value="([^"]*)"', tag.group(0))
    return value.group(1) if value else None


def test_before_the_sale_the_email_is_open_and_only_the_button_waits(client):
    product = product_with_keys(keys=3, sale_starts_at=timezone.now() + timedelta(minutes=5))
    form = _form(client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en").content.decode())
    assert "<fieldset disabled" not in form and "<fieldset>" in form
    email = re.search(r'<input[^>]*name="email"[^>]*>', form).group(0)
    assert "disabled" not in email
    button = re.search(r'<button type="submit"[^>]*>', form).group(0)
    assert "disabled" in button
    # What the page's script needs to open the sale in place.
    assert re.search(r'data-opens-in="\d+"', form) and f'data-product-url="/api/v1/products/{product.sku}"' in form


def test_after_an_ended_sale_the_whole_form_stays_shut(client):
    now = timezone.now()
    product = product_with_keys(keys=3, sale_starts_at=now - timedelta(hours=2), sale_ends_at=now - timedelta(hours=1))
    assert "<fieldset disabled" in _form(client.get(f"/p/{product.sku}").content.decode())


def test_a_refusal_keeps_the_email_the_quantity_and_the_page_token(client):
    product = product_with_keys(keys=3, min_page_seconds=30, max_per_order=5)
    page = _form(client.get(f"/p/{product.sku}", HTTP_ACCEPT_LANGUAGE="en").content.decode())
    token = _value(page, "page_token")
    response = client.post(
        f"/p/{product.sku}/buy",
        {"email": "early@example.com", "quantity": "2", "page_token": token, "idempotency_key": "k-1"},
        HTTP_ACCEPT_LANGUAGE="en",
        follow=True,
    )
    html = response.content.decode()
    assert "too fast" in html.lower() or "wait" in html.lower()  # refused: under the minimum time on page
    again = _form(html)
    assert _value(again, "email") == "early@example.com"
    assert _value(again, "quantity") == "2"
    # The same token: the buyer's time on the page keeps counting from their first view.
    assert _value(again, "page_token") == token
    # A fresh idempotency key: the refused attempt made no order.
    assert _value(again, "idempotency_key") != "k-1"
    # Kept once: the next view of the page starts clean.
    assert _value(_form(client.get(f"/p/{product.sku}").content.decode()), "email") is None


def test_a_kept_token_of_another_product_is_not_reused(client):
    product = product_with_keys(keys=3, min_page_seconds=30)
    other = product_with_keys(keys=3, min_page_seconds=30)
    foreign = _value(_form(client.get(f"/p/{other.sku}").content.decode()), "page_token")
    response = client.post(
        f"/p/{product.sku}/buy", {"email": "a@example.com", "quantity": "1", "page_token": foreign}, follow=True
    )
    assert _value(_form(response.content.decode()), "page_token") != foreign


def test_a_refusal_keeps_the_coupon_and_the_checkout_fields_sealed_in_the_cookie(client):
    product = product_with_keys(keys=3, min_page_seconds=30)
    ProductInputField.objects.create(product=product, key="account_id", label_zh="游戏账号", label_en="Account")
    ProductInputField.objects.create(
        product=product, key="region", label_zh="区服", label_en="Region", kind="select", choices="Asia\nEurope\n"
    )
    token = _value(_form(client.get(f"/p/{product.sku}").content.decode()), "page_token")
    response = client.post(
        f"/p/{product.sku}/buy",
        {
            "email": "early@example.com",
            "quantity": "1",
            "page_token": token,
            "coupon": "SPRING10",
            "field_account_id": "55501234",
            "field_region": "Europe",
        },
    )
    # What the browser holds says nothing readable (the account id is the buyer's).
    cookie = response.cookies["purchase_kept"].value
    assert "55501234" not in cookie and "early@example.com" not in cookie
    again = _form(client.get(f"/p/{product.sku}").content.decode())
    assert _value(again, "coupon") == "SPRING10"
    assert _value(again, "field_account_id") == "55501234"
    assert re.search(r'<option value="Europe" selected>', again)


def test_fields_too_long_for_a_cookie_are_dropped_and_the_rest_is_kept(client):
    product = product_with_keys(keys=3, min_page_seconds=30)
    for key in ("note", "memo", "remark"):
        ProductInputField.objects.create(product=product, key=key, label_zh=key, label_en=key, max_length=500)
    token = _value(_form(client.get(f"/p/{product.sku}").content.decode()), "page_token")
    long_values = {f"field_{key}": "长" * 500 for key in ("note", "memo", "remark")}
    response = client.post(
        f"/p/{product.sku}/buy",
        {"email": "early@example.com", "quantity": "1", "page_token": token, **long_values},
    )
    assert len(response.cookies["purchase_kept"].value) < 4000
    again = _form(client.get(f"/p/{product.sku}").content.decode())
    assert _value(again, "email") == "early@example.com"
    assert _value(again, "field_note") == ""
