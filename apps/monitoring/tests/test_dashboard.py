"""The admin's live sale dashboard: who may see it, and its figures."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from apps.orders.models import Order
from apps.orders.services import fulfilment, persistence
from apps.orders.services.checkout import order_checkout
from apps.orders.tests.delivery_support import product_manual
from apps.orders.tests.support import product_with_keys

from .sale import checkout, pay


@pytest.fixture
def merchant(db, client):
    user = User.objects.create_user("merchant", password="pw-merchant-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_product"))
    client.force_login(user)
    return client


def test_anonymous_visitors_are_sent_to_the_admin_login(client, db):
    product = product_with_keys(keys=1)
    for url in ("/admin/sales/", f"/admin/sales/{product.id}/", f"/admin/sales/{product.id}/data"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


def test_staff_without_the_product_permission_are_refused(client, db):
    user = User.objects.create_user("clerk", password="pw-clerk-1", is_staff=True)
    client.force_login(user)
    product = product_with_keys(keys=1)
    assert client.get(f"/admin/sales/{product.id}/data").status_code == 403


def test_the_index_links_each_product_to_its_dashboard(merchant):
    product = product_with_keys(keys=1, title="Hot card")
    html = merchant.get("/admin/sales/").content.decode()
    assert f'href="/admin/sales/{product.id}/"' in html and "Hot card" in html
    page = merchant.get(f"/admin/sales/{product.id}/").content.decode()
    assert f'data-url="/admin/sales/{product.id}/data"' in page
    assert "/static/monitoring/dashboard.js" in page and 'data-chart="stock"' in page


@pytest.mark.django_db(transaction=True)
def test_the_figures_follow_a_sale(client, settings):
    from django.test import Client

    settings.RATELIMIT_ENABLE = False
    product = product_with_keys(keys=5, per_buyer_limit=5)
    buyers = Client()
    placed = [checkout(buyers, sku=product.sku, email=f"d{i}@example.com").json()["order_no"] for i in range(4)]
    persistence.order_persist_queued(product_ids=[product.id])
    orders = list(Order.objects.filter(order_no__in=placed).order_by("id"))
    for order in orders[:3]:
        assert pay(buyers, order=order).status_code == 200
    # Two delivered; the third ran short (as if its key had gone), so it needs attention.
    Order.objects.filter(id=orders[0].id).update(paid_at=timezone.now() - timedelta(seconds=3))
    fulfilment.order_fulfil(order_id=orders[0].id, batch_size=2)
    Order.objects.filter(id=orders[2].id).update(status=Order.Status.NEEDS_ATTENTION)

    user = User.objects.create_superuser("boss", password="pw-boss-1")
    client.force_login(user)
    data = client.get(f"/admin/sales/{product.id}/data").json()
    assert len(data["minutes"]) == len(data["orders_per_minute"]) == len(data["stock_left"]) == 30
    assert sum(data["orders_per_minute"]) == 4
    assert data["now"]["stock_left"] == 1
    assert data["stock_left"][-1] == 1
    assert max(s for s in data["stock_left"] if s is not None) <= 5
    assert data["now"]["needs_attention"] == 1
    assert data["now"]["awaiting_keys"] == 0
    assert data["now"]["success_rate"] == pytest.approx(66.7)
    assert data["now"]["paid_to_keys_avg"] >= 1.0  # one order waited about 3 s
    assert any(v is not None for v in data["paid_to_keys_max"])


def test_the_admin_home_links_to_the_live_sales(merchant):
    assert 'href="/admin/sales/"' in merchant.get("/admin/").content.decode()


def test_orders_in_the_last_minute_are_the_last_sixty_seconds_not_the_calendar_minute(db):
    from apps.monitoring.dashboard import sale_dashboard_figures

    product = product_with_keys(keys=5, per_buyer_limit=5)
    for i in range(3):
        order_checkout(sku=product.sku, email=f"r{i}@example.com", quantity=1)
    persistence.order_persist_queued(product_ids=[product.id])
    just_turned = timezone.now().replace(second=2, microsecond=0) + timedelta(minutes=5)
    orders = list(Order.objects.filter(product=product).order_by("id"))
    Order.objects.filter(id__in=[o.id for o in orders[:2]]).update(created_at=just_turned - timedelta(seconds=10))
    Order.objects.filter(id=orders[2].id).update(created_at=just_turned - timedelta(seconds=70))
    figures = sale_dashboard_figures(product=product, now=just_turned)
    assert figures["now"]["orders_last_minute"] == 2  # both from the minute before the one just begun
    assert figures["orders_per_minute"][-1] == 0 and figures["orders_per_minute"][-2] == 2


def test_manual_orders_are_not_awaiting_keys(db):
    from apps.monitoring.dashboard import sale_dashboard_figures

    manual = product_manual(stock=5, per_buyer_limit=5)
    pool = product_with_keys(keys=5, per_buyer_limit=5)
    for i in range(2):
        order_checkout(sku=manual.sku, email=f"m{i}@example.com", quantity=1)
        order_checkout(sku=pool.sku, email=f"k{i}@example.com", quantity=1)
    persistence.order_persist_queued()
    Order.objects.update(status=Order.Status.PAID, paid_at=timezone.now())
    assert sale_dashboard_figures(product=manual)["now"]["awaiting_keys"] == 0
    assert sale_dashboard_figures(product=pool)["now"]["awaiting_keys"] == 2
