from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.static import serve

from .health import run_readiness_checks


@never_cache
def healthz(request):
    """Liveness: the process answers. It touches no server, so a database
    outage does not get every web process restarted."""
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    """Readiness: 200 when every check passes, 503 naming the ones that fail,
    so a load balancer stops sending buyers to a process that cannot sell."""
    checks = run_readiness_checks()
    ready = all(result == "ok" or result.startswith("ok: ") for result in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def media_file(request, path):
    """An uploaded file from MEDIA_ROOT, for setups without nginx (SERVE_MEDIA).
    MEDIA_ROOT is read per request, so a test can point it at its own folder."""
    return serve(request, path, document_root=settings.MEDIA_ROOT)
