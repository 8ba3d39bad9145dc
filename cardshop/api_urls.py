"""/api/v1/: the public JSON API, and its OpenAPI schema. (The sandbox's pay
call, /api/v1/payments/..., is in apps/payments/urls.py.)"""

from django.urls import path
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.views import SpectacularAPIView

from apps.catalog.api import ProductDetailView
from apps.coupons.api import PriceCheckView
from apps.orders.api import CaptchaView, OrderCancelView, OrderCreateView, OrderDetailView
from apps.payments.api import OrderPaymentCreateView

app_name = "api"

# JSON unless the client asks for YAML (?format=yaml, or an Accept header of
# application/yaml or application/vnd.oai.openapi); drf-spectacular's default is YAML first.
SCHEMA_RENDERERS = [OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer, OpenApiYamlRenderer2]

urlpatterns = [
    path("orders", OrderCreateView.as_view(), name="order-create"),
    path("orders/<str:order_no>", OrderDetailView.as_view(), name="order-detail"),
    path("orders/<str:order_no>/payments", OrderPaymentCreateView.as_view(), name="order-payment-create"),
    path("orders/<str:order_no>/cancel", OrderCancelView.as_view(), name="order-cancel"),
    path("products/<str:sku>", ProductDetailView.as_view(), name="product-detail"),
    path("captcha", CaptchaView.as_view(), name="captcha"),
    path("coupons/check", PriceCheckView.as_view(), name="coupon-check"),
    path("schema", SpectacularAPIView.as_view(renderer_classes=SCHEMA_RENDERERS), name="schema"),
]
