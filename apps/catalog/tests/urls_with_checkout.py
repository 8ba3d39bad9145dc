"""The project's URLs plus a stand-in `orders:checkout`, so the storefront's
purchase form can be tested on its own."""

from django.http import HttpResponse
from django.urls import include, path

from cardshop.urls import urlpatterns as project_urlpatterns

orders_patterns = ([path("checkout/<str:sku>", lambda request, sku: HttpResponse(), name="checkout")], "orders")

urlpatterns = [path("test-orders/", include(orders_patterns)), *project_urlpatterns]
