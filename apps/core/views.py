from django.http import JsonResponse


def healthz(request):
    """Liveness: the process answers. Readiness (/readyz) checks the servers."""
    return JsonResponse({"status": "ok"})
