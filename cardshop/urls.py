from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerView

urlpatterns = [
    path("", include("apps.monitoring.urls")),  # /metrics, and admin/sales/ ahead of the admin's catch-all
    path("admin/", admin.site.urls),
    path("api/v1/", include("cardshop.api_urls")),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="api:schema"), name="api-docs"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("captcha/", include("captcha.urls")),
    path("", include("apps.core.urls")),
    path("", include("apps.catalog.urls")),
    path("", include("apps.orders.urls")),
    path("", include("apps.payments.urls")),
]
