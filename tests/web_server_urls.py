"""The app's URLs plus /test/slow?seconds=N, a request that takes N seconds
(tests/test_web_server_granian.py: reload and stop while it runs)."""

import time

from django.http import HttpResponse
from django.urls import path

from cardshop.urls import urlpatterns as app_urlpatterns


def slow(request):
    seconds = min(float(request.GET.get("seconds", "1")), 120.0)
    time.sleep(seconds)
    return HttpResponse(f"slept {seconds}", content_type="text/plain")


urlpatterns = [*app_urlpatterns, path("test/slow", slow)]
