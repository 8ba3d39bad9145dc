"""/api/v1/: the public JSON API."""

from django.urls import path

from apps.catalog import api as catalog_api
from apps.orders import api as orders_api
from apps.orders import bot_checks

app_name = "api"

urlpatterns = [
    path("orders", orders_api.order_create, name="order-create"),
    path("orders/<str:order_no>", orders_api.order_detail, name="order-detail"),
    path("products/<str:sku>", catalog_api.product_detail, name="product-detail"),
    path("captcha", bot_checks.captcha_new, name="captcha"),
]
