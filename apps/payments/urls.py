from django.urls import path

from . import views

app_name = "payments"

urlpatterns = [
    path("payments/webhook/<str:provider>", views.webhook, name="webhook"),
    path("pay/sandbox/<str:order_no>", views.sandbox_pay_page, name="sandbox-pay"),
    path("api/v1/payments/sandbox/<str:order_no>/pay", views.sandbox_pay_api, name="sandbox-pay-api"),
]
