from django.urls import path

from . import api, views

app_name = "payments"

urlpatterns = [
    path("payments/webhook/<str:provider>", views.webhook, name="webhook"),
    path("pay/sandbox/<str:order_no>", views.sandbox_pay_page, name="sandbox-pay"),
    path("api/v1/payments/sandbox/<str:order_no>/pay", api.SandboxPayView.as_view(), name="sandbox-pay-api"),
]
