"""Revenue on the admin home and on a product's sale dashboard: amounts with
their currency, refunded orders left out, days in the shop's timezone."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from apps.catalog.tests.factories import ProductFactory
from apps.monitoring.dashboard import sale_dashboard_figures
from apps.orders.models import Order
from apps.orders.tests.factories import OrderFactory

pytestmark = pytest.mark.django_db
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


def _shop_midnight():
    return timezone.localtime(timezone.now(), timezone.get_default_timezone()).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


@pytest.fixture
def sales(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    card = ProductFactory(sku="REV-CARD", title="Revenue card", price=Decimal("9.90"))
    usd = ProductFactory(sku="REV-USD", title="Dollar card", price=Decimal("5.00"), currency="USD")
    midnight = _shop_midnight()
    paid = {"status": Order.Status.DELIVERED}
    # A minute after the shop's midnight (the previous day in UTC) is today.
    OrderFactory(product=card, quantity=2, amount=Decimal("19.80"), paid_at=midnight + timedelta(minutes=1), **paid)
    OrderFactory(product=card, amount=Decimal("9.90"), paid_at=midnight - timedelta(minutes=1), **paid)
    OrderFactory(product=usd, amount=Decimal("5.00"), paid_at=midnight + timedelta(minutes=2), **paid)
    OrderFactory(
        product=card, amount=Decimal("1000.00"), paid_at=midnight + timedelta(minutes=3), status=Order.Status.REFUNDED
    )
    return {"card": card, "usd": usd}


def test_the_admin_home_shows_revenue_today_and_7_days_per_currency_and_product(admin_client, sales):
    html = admin_client.get("/admin/", **ZH).content.decode()
    assert 'id="revenue"' in html and "营业额" in html
    assert '<td class="revenue-amount" data-revenue="today-CNY">¥19.80 CNY</td>' in html
    assert '<td class="revenue-amount" data-revenue="week-CNY">¥29.70 CNY</td>' in html
    assert '<td class="revenue-amount" data-revenue="today-USD">$5.00 USD</td>' in html
    assert "1000.00" not in html and "1,000.00" not in html  # the refunded order
    assert "Revenue card" in html and f'href="/admin/sales/{sales["card"].id}/"' in html
    assert "Asia/Shanghai" in html


def test_staff_who_may_not_see_orders_see_no_revenue(client, sales):
    user = User.objects.create_user("clerk", password="pw-clerk-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_product"))
    client.force_login(user)
    html = client.get("/admin/", **ZH).content.decode()
    assert 'id="revenue"' not in html and "19.80" not in html


def test_the_sale_dashboard_shows_the_products_revenue(sales):
    now = sale_dashboard_figures(product=sales["card"])["now"]
    assert now["revenue_today"] == "¥19.80 CNY"
    assert now["revenue_last_7_days"] == "¥29.70 CNY"
    assert sale_dashboard_figures(product=ProductFactory())["now"]["revenue_today"] is None


def test_the_sale_dashboard_page_has_the_revenue_tiles(admin_client, sales):
    page = admin_client.get(f"/admin/sales/{sales['card'].id}/", **ZH).content.decode()
    assert 'data-now="revenue_today"' in page and 'data-now="revenue_last_7_days"' in page
    assert "今日营业额" in page
