from django.conf import settings
from django.urls import path, re_path
from django.views.static import serve

from . import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]

# `make run` has no nginx in front, so gunicorn serves the collected static
# files itself; with nginx (docker-compose, production) this stays off.
if settings.SERVE_STATIC:
    urlpatterns += [
        re_path(
            r"^{}(?P<path>.*)$".format(settings.STATIC_URL.lstrip("/")),
            serve,
            {"document_root": settings.STATIC_ROOT},
        ),
    ]

# Uploaded images (products, the logo): Django serves them only without nginx
# in front (`make run`, DEBUG); in production nginx serves /media/ from disk.
if settings.SERVE_MEDIA:
    urlpatterns += [
        re_path(r"^{}(?P<path>.*)$".format(settings.MEDIA_URL.lstrip("/")), views.media_file),
    ]
