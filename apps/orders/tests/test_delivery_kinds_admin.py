"""The merchant's side of reusable-key and manual-delivery products, through
the admin's real pages and POSTs: the manual delivery form on the order's
change page, the queue and its count on the dashboard, and the product form
(delivery kind, stock number, reusable key, no key uploads)."""

import threading
from datetime import timedelta
from unittest.mock import patch

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from apps.catalog.models import Product
from apps.core.images import image_rendition
from apps.orders.models import Order
from apps.orders.tests.delivery_support import SHARED_KEY, product_manual, product_reusable, stock_number
from apps.orders.tests.support import checkout, paid_orders, product_with_keys
from apps.stock.redis import stock_redis
from apps.stock.redis_keys import stock_key
from apps.stock.selectors import stock_remaining
from apps.stock.warmup import stock_warm
from testing.admin_forms import admin_form_values
from testing.images import png_bytes

pytestmark = pytest.mark.django_db(transaction=True)

MERCHANT_PERMISSIONS = (
    "orders.view_order",
    "orders.change_order",
    "catalog.view_product",
    "catalog.change_product",
    "cardkeys.add_cardkey",
)


def _staff(username: str, permissions) -> User:
    user = User.objects.create_user(username, password="pw-not-used", is_staff=True)
    for dotted in permissions:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


@pytest.fixture
def merchant_client(client):
    """A merchant's staff account: orders and products, no superuser powers."""
    client.force_login(_staff("merchant", MERCHANT_PERMISSIONS))
    return client


def test_a_merchant_delivers_a_manual_order_from_its_change_page(merchant_client, celery_eager):
    product = product_manual(stock=3)
    pool = product_with_keys(keys=1)
    (order,) = paid_orders(product, 1)
    (pool_order,) = paid_orders(pool, 1)  # delivered at once by fulfilment
    assert Order.objects.get(id=order.id).status == Order.Status.PAID
    assert mail.outbox and len(mail.outbox) == 1  # the pool order's mail only

    dashboard = merchant_client.get("/admin/").content.decode()
    assert 'data-awaiting="1"' in dashboard and "?manual=awaiting" in dashboard
    queue = merchant_client.get("/admin/orders/order/?manual=awaiting").content.decode()
    assert order.order_no in queue and pool_order.order_no not in queue

    url = f"/admin/orders/order/{order.id}/change/"
    page = merchant_client.get(url)
    assert 'name="manual_delivery_content"' in page.content.decode()

    empty = merchant_client.post(url, {"manual_delivery_content": "  ", "_save": "Save"})
    assert empty.status_code == 200 and empty.context["adminform"].form.errors
    assert Order.objects.get(id=order.id).status == Order.Status.PAID

    text = "Topped up 100 credits to account 42 & <friends>"
    response = merchant_client.post(url, {"manual_delivery_content": text, "_save": "Save"}, follow=True)

    assert response.redirect_chain[-1][0] == url
    shown = response.content.decode()
    assert order.order_no in shown and 'name="manual_delivery_content"' not in shown
    assert "Topped up 100 credits to account 42 &amp; &lt;friends&gt;" in shown  # escaped in the admin
    delivered = Order.objects.get(id=order.id)
    assert delivered.status == Order.Status.DELIVERED
    assert delivered.manually_delivered_by.username == "merchant"
    assert text not in delivered.manual_content_encrypted  # stored encrypted
    assert stock_number(product) == 2
    assert len(mail.outbox) == 2 and text in mail.outbox[-1].body  # plain text, byte for byte

    # A second POST of the old form (another tab) changes nothing and mails nothing.
    merchant_client.post(url, {"manual_delivery_content": "again", "_save": "Save"}, follow=True)
    assert len(mail.outbox) == 2 and stock_number(product) == 2
    assert 'data-awaiting="0"' in merchant_client.get("/admin/").content.decode()


def test_a_staff_member_who_may_only_view_orders_cannot_deliver(client, celery_eager):
    product = product_manual(stock=3)
    (order,) = paid_orders(product, 1)
    client.force_login(_staff("viewer", ("orders.view_order",)))
    url = f"/admin/orders/order/{order.id}/change/"
    assert 'name="manual_delivery_content"' not in client.get(url).content.decode()
    assert client.post(url, {"manual_delivery_content": "x", "_save": "Save"}).status_code == 403
    assert Order.objects.get(id=order.id).status == Order.Status.PAID and mail.outbox == []


def test_the_merchant_sets_the_stock_number_and_the_gate_follows(merchant_client):
    product = product_manual(stock=5)
    checkout(product, email="a@x.com", quantity=2)  # holds 2 of the 5
    url = f"/admin/catalog/product/{product.id}/change/"
    data = admin_form_values(merchant_client, url)

    response = merchant_client.post(url, {**data, "stock_quantity": "12", "_save": "Save"})
    assert response.status_code == 302
    assert stock_number(product) == 12 and stock_remaining(product_id=product.id) == 10

    too_low = merchant_client.post(url, {**data, "stock_quantity": "1", "_save": "Save"})
    assert too_low.status_code == 200
    assert "库存不能低于此数" in str(too_low.context["adminform"].form.errors["stock_quantity"])
    assert stock_number(product) == 12

    # A page loaded at 12 and saved after a delivery took one: the number the
    # merchant did not touch is left alone, not set back to 12.
    stale = admin_form_values(merchant_client, url)
    assert stale["stock_quantity"] == stale["stock_quantity_seen"] == "12"
    Product.objects.filter(id=product.id).update(stock_quantity=11)
    merchant_client.post(url, {**stale, "title_zh_hans": "Renamed", "_save": "Save"})
    assert Product.objects.get(id=product.id).title_zh_hans == "Renamed" and stock_number(product) == 11
    merchant_client.post(url, {**admin_form_values(merchant_client, url), "title_zh_hans": "Again", "_save": "Save"})
    assert Product.objects.get(id=product.id).title_zh_hans == "Again" and stock_number(product) == 11


def test_a_reusable_key_product_needs_its_key_and_shows_it_masked(merchant_client):
    product = product_with_keys(keys=0)
    url = f"/admin/catalog/product/{product.id}/change/"
    data = admin_form_values(merchant_client, url)

    refused = merchant_client.post(url, {**data, "delivery_kind": "reusable_key", "_save": "Save"})
    assert refused.status_code == 200
    assert "需要设置卡密" in str(refused.context["adminform"].form.errors["reusable_key"])
    assert Product.objects.get(id=product.id).delivery_kind == Product.Delivery.KEYS

    saved = merchant_client.post(
        url,
        {**data, "delivery_kind": "reusable_key", "reusable_key": SHARED_KEY, "stock_quantity": "7", "_save": "Save"},
    )
    assert saved.status_code == 302
    product.refresh_from_db()
    assert product.delivery_kind == Product.Delivery.REUSABLE_KEY
    assert product.reusable_key_encrypted and SHARED_KEY not in product.reusable_key_encrypted
    page = merchant_client.get(url).content.decode()
    assert SHARED_KEY not in page and "SHAR****" in page
    # The gate counted keys; it now counts the number: forgotten, and rebuilt by the warm-up.
    assert stock_remaining(product_id=product.id) is None
    assert stock_warm(product=product) == (True, 7)


def test_key_uploads_are_hidden_and_refused_for_products_without_a_pool(merchant_client):
    product = product_reusable(stock=4)
    page = merchant_client.get(f"/admin/catalog/product/{product.id}/change/").content.decode()
    assert "upload-keys" not in page
    response = merchant_client.get(f"/admin/catalog/product/{product.id}/upload-keys/", follow=True)
    assert response.redirect_chain[-1][0] == f"/admin/catalog/product/{product.id}/change/"
    assert "不接受上传卡密" in response.content.decode()  # "takes no key uploads", in the admin's zh-hans


def test_the_delivery_kind_does_not_change_while_orders_hold_stock(merchant_client):
    product = product_manual(stock=4)
    checkout(product, email="a@x.com")
    url = f"/admin/catalog/product/{product.id}/change/"
    data = admin_form_values(merchant_client, url)
    refused = merchant_client.post(url, {**data, "delivery_kind": "keys", "_save": "Save"})
    assert refused.status_code == 200 and refused.context["adminform"].form.errors["delivery_kind"]
    assert Product.objects.get(id=product.id).delivery_kind == Product.Delivery.MANUAL


def test_the_dashboard_and_the_filter_show_manual_orders_past_the_sla(merchant_client, settings, published):
    settings.MANUAL_DELIVERY_SLA_HOURS = 2
    product = product_manual(stock=5, per_buyer_limit=2)
    late, fresh = paid_orders(product, 2)
    Order.objects.filter(id=late.id).update(paid_at=timezone.now() - timedelta(hours=3))

    dashboard = merchant_client.get("/admin/").content.decode()
    assert 'data-awaiting="2"' in dashboard and 'data-overdue="1"' in dashboard
    overdue = merchant_client.get("/admin/orders/order/?manual=overdue").content.decode()
    assert late.order_no in overdue and fresh.order_no not in overdue


def test_a_merchant_adds_a_reusable_key_product_and_the_warm_up_counts_its_number(merchant_client):
    merchant = User.objects.get(username="merchant")
    merchant.user_permissions.add(Permission.objects.get(content_type__app_label="catalog", codename="add_product"))
    data = admin_form_values(merchant_client, "/admin/catalog/product/add/")
    fields = {
        "sku": "DL-1",
        "title_zh_hans": "Download",
        "price": "5.00",
        "currency": "CNY",
        "delivery_kind": "reusable_key",
    }
    response = merchant_client.post(
        "/admin/catalog/product/add/",
        {**data, **fields, "stock_quantity": "9", "reusable_key": SHARED_KEY, "_save": "Save"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    product = Product.objects.get(sku="DL-1")
    assert (product.delivery_kind, product.stock_quantity) == ("reusable_key", 9)
    assert stock_warm(product=product) == (True, 9)


def test_the_product_page_leaves_the_product_admin_as_it_was_declared(merchant_client):
    # modeltranslation's TranslationAdmin copies a custom form's Meta.fields
    # onto the admin the first time it builds the page; the product admin then
    # has both fields and fieldsets, which the admin's checks refuse (E005).
    product_admin = admin.site._registry[Product]
    assert product_admin.check() == []
    product = product_reusable(stock=2)
    assert merchant_client.get(f"/admin/catalog/product/{product.id}/change/").status_code == 200
    assert merchant_client.get("/admin/catalog/product/").status_code == 200
    assert product_admin.fields is None and product_admin.check() == []


def test_a_decrease_checkouts_overtook_after_the_form_check_is_a_form_error_and_saves_nothing(merchant_client):
    """The form's check of the orders passed, but checkouts reserved the units
    before the save reached the gate (here: the counter shows 1 free of 5): the
    page comes back with the reason on the stock field, and nothing the page
    carried was saved (review item 11)."""
    product = product_reusable(stock=5)
    url = f"/admin/catalog/product/{product.id}/change/"
    data = admin_form_values(merchant_client, url)
    stock_redis().set(stock_key(product.id), 1)  # 4 reserved meanwhile, not yet visible to the form's check

    response = merchant_client.post(url, {**data, "title_zh_hans": "Renamed", "stock_quantity": "2", "_save": "Save"})

    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors["stock_quantity"])
    assert "只有 1 件可用" in errors  # zh-hans: "only 1 unit is free"
    assert response.context["adminform"].form["title_zh_hans"].value() == "Renamed"  # what was typed stays
    fresh = Product.objects.get(id=product.id)
    assert (fresh.title, fresh.stock_quantity) == (product.title, 5)
    assert stock_remaining(product_id=product.id) == 1


def test_the_image_copies_are_made_before_the_product_row_is_locked(merchant_client, settings, tmp_path):
    """Pillow's work happens while no transaction holds the product's row,
    so reusable-key fulfilment of the product is not held up by it."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    product = product_reusable(stock=5)
    url = f"/admin/catalog/product/{product.id}/change/"
    data = admin_form_values(merchant_client, url)
    row_free_during_renditions: list[bool] = []

    def try_the_row():
        try:
            with transaction.atomic():
                Product.objects.select_for_update(nowait=True).get(id=product.id)
            row_free_during_renditions.append(True)
        except DatabaseError:
            row_free_during_renditions.append(False)
        finally:
            connection.close()

    def rendition_watched(source, *, size):
        probe = threading.Thread(target=try_the_row)
        probe.start()
        probe.join(10)
        return image_rendition(source, size=size)

    with patch("apps.catalog.services.image_rendition", rendition_watched):
        upload = SimpleUploadedFile("dl.png", png_bytes(width=600, height=400), content_type="image/png")
        response = merchant_client.post(url, {**data, "stock_quantity": "7", "image": upload, "_save": "Save"})

    assert response.status_code == 302
    assert row_free_during_renditions == [True, True]
    product.refresh_from_db()
    assert product.image_card and product.image_page and product.stock_quantity == 7
    assert stock_remaining(product_id=product.id) == 7
