from django.urls import path

from . import views

app_name = "monitoring"

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    path("admin/sales/", views.sales_index, name="sales"),
    path("admin/sales/<int:product_id>/", views.sale_dashboard, name="sale-dashboard"),
    path("admin/sales/<int:product_id>/data", views.sale_dashboard_data, name="sale-dashboard-data"),
]
