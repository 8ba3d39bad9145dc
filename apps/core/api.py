"""The base of the public JSON API's views (Django REST framework).

Lean on purpose: checkout is the hot path, and every layer DRF would add by
default (session authentication, permissions, throttles, content negotiation,
the browsable renderer) costs CPU per request. What the API needs instead:

- no DRF authentication: the endpoints are open or authenticated by the order
  token, so there is no cookie to forge; SessionAuthentication would enforce
  CSRF on them (APIView.as_view already exempts them from Django's check);
- the per-client rate limits of apps.core.ratelimits, shared with the
  storefront forms, in DRF's throttle step (before the handler, so a refused
  request reserves nothing);
- JSON in and out whatever the client's Accept header says, as before DRF;
- errors as {"error", "detail", ...} by shop_error_response, also for DRF's
  own refusals (405 and the like).
"""

from django.http import JsonResponse
from rest_framework.exceptions import APIException
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from .errors import ShopError, shop_error_response
from .ratelimits import Limit, limits_check


class JsonOnlyNegotiation(BaseContentNegotiation):
    """The API speaks JSON only: no 406 for a client that asks otherwise, and
    no Accept header parsing on every request."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ShopAPIView(APIView):
    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()
    parser_classes = (JSONParser,)
    renderer_classes = (JSONRenderer,)
    content_negotiation_class = JsonOnlyNegotiation
    metadata_class = None  # OPTIONS answers 405, as it did before DRF
    # Checked in this order; the first one over its rate refuses the request.
    rate_limits: tuple[Limit, ...] = ()

    def perform_authentication(self, request):
        # Nothing to authenticate, and touching request.user here would
        # replace Django's lazy user on the request with DRF's None.
        pass

    def check_throttles(self, request):
        limits_check(request=request._request, limits=self.rate_limits)


def api_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: domain errors through shop_error_response, and
    DRF's own exceptions in the same {"error", "detail"} shape."""
    if isinstance(exc, ShopError):
        return shop_error_response(exc)
    if isinstance(exc, APIException):
        detail = exc.detail if isinstance(exc.detail, str) else exc.default_detail
        response = JsonResponse({"error": exc.default_code, "detail": str(detail)}, status=exc.status_code)
        if getattr(exc, "wait", None):
            response["Retry-After"] = str(int(exc.wait))
        return response
    return None  # DRF re-raises it: a 500 as for any other view
