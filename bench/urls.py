"""The app's URLs plus the naive design's checkout and the bare single-EVALSHA
view (bench only)."""

from django.urls import path

from cardshop.urls import urlpatterns as app_urlpatterns

from .bare import bare_evalsha
from .naive import naive_order_create

urlpatterns = [
    *app_urlpatterns,
    path("bench/naive/orders", naive_order_create, name="bench-naive-order"),
    path("bench/bare-evalsha", bare_evalsha, name="bench-bare-evalsha"),
]
