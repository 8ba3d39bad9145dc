from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.catalog.models import Product
from apps.core.client_ip import client_ip
from apps.core.replica import replica_enabled, replica_health

from .collector import ShopStateCollector
from .dashboard import REFRESH_SECONDS, sale_dashboard_figures
from .exporter import metrics_access_allowed, process_metrics_registry

_registry = None


def _web_registry():
    # Built once per process: the multiprocess collector re-reads the files,
    # and the state collector re-reads Redis and MariaDB, at every scrape.
    global _registry
    if _registry is None:
        _registry = process_metrics_registry(ShopStateCollector())
    return _registry


@never_cache
def metrics(request):
    """Prometheus text format, for allowed networks or the bearer token only."""
    if not metrics_access_allowed(
        remote_addr=client_ip(request), authorization=request.headers.get("Authorization", "")
    ):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    if replica_enabled():
        # The replica's gauges are as fresh as the scrape, also when no reader asked lately.
        replica_health.verdict()
    return HttpResponse(generate_latest(_web_registry()), content_type=CONTENT_TYPE_LATEST)


# --- The admin's live sale dashboard


def _may_watch_sales(request) -> bool:
    return request.user.has_perm("catalog.view_product")


@admin.site.admin_view
def sales_index(request):
    if not _may_watch_sales(request):
        raise PermissionDenied
    products = Product.objects.filter(is_active=True).order_by(F("sale_starts_at").desc(nulls_last=True), "-id")[:100]
    context = {**admin.site.each_context(request), "title": _("Live sales"), "products": products}
    return render(request, "admin/monitoring/sales_index.html", context)


@admin.site.admin_view
def sale_dashboard(request, product_id: int):
    if not _may_watch_sales(request):
        raise PermissionDenied
    product = get_object_or_404(Product, id=product_id)
    context = {
        **admin.site.each_context(request),
        "title": _("Live sale: %(title)s") % {"title": product.title},
        "product": product,
        "refresh_seconds": REFRESH_SECONDS,
    }
    return render(request, "admin/monitoring/sale_dashboard.html", context)


@never_cache
@admin.site.admin_view
def sale_dashboard_data(request, product_id: int):
    if not _may_watch_sales(request):
        raise PermissionDenied
    product = get_object_or_404(Product, id=product_id)
    return JsonResponse(sale_dashboard_figures(product=product))
