from django.urls import path

from . import views

app_name = "orders"

urlpatterns = [
    path("orders/lookup", views.order_lookup, name="lookup"),
    path("orders/<str:order_no>", views.order_detail, name="detail"),
    path("orders/<str:order_no>/status", views.order_status, name="status"),
]
