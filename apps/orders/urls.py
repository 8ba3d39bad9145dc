from django.urls import path

from . import checkout_page, views

app_name = "orders"

urlpatterns = [
    path("p/<str:sku>/buy", checkout_page.checkout, name="checkout"),
    path("orders/lookup", views.order_lookup, name="lookup"),
    path("orders/mine", views.my_orders, name="mine"),
    path("orders/<str:order_no>", views.order_detail, name="detail"),
    path("orders/<str:order_no>/open/<str:signature>", views.order_open, name="open"),
    path("orders/<str:order_no>/status", views.order_status, name="status"),
    path("orders/<str:order_no>/pay", views.order_pay, name="pay"),
    path("orders/<str:order_no>/cancel", views.order_cancel_page, name="cancel"),
    path("orders/<str:order_no>/check-payment", views.order_payment_check, name="check-payment"),
]
