"""The app's URLs plus the naive design's checkout (bench only)."""
from django.urls import path

from cardshop.urls import urlpatterns as app_urlpatterns

from .naive import naive_order_create

urlpatterns = [*app_urlpatterns, path("bench/naive/orders", naive_order_create, name="bench-naive-order")]
