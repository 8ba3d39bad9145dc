import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cardshop.settings.local")
application = get_wsgi_application()

# Under Granian, whose own access log is off (scripts/granian_serve.py): the
# same line gunicorn's access log writes, without tokens (apps.core.access_log).
from apps.core.access_log import AccessLogMiddleware  # noqa: E402  (after Django is set up)

application_access_logged = AccessLogMiddleware(application)
