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
- JSON in and out whatever the client's Accept header says, as before DRF,
  parsed by apps.core.request_body (depth and size bounded); a view that
  sets `json_body_required` refuses a POST of any other Content-Type (415);
- errors as {"error", "detail", ...} by shop_error_response, also for DRF's
  own refusals (405 and the like).
"""

from django.http import JsonResponse
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import APIException
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from .errors import InvalidInput, ShopError, UnsupportedMediaType, shop_error_response
from .ratelimits import Limit, limits_check
from .request_body import json_body


class JsonOnlyNegotiation(BaseContentNegotiation):
    """The API speaks JSON only: no 406 for a client that asks otherwise, and
    no Accept header parsing on every request."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


BODY_NOT_JSON = _("The body must be a JSON object.")


class ShopJSONParser(BaseParser):
    """DRF's request.data through the one body reader (request_body.json_body):
    a body too deep or not JSON is `invalid`, too large `request_too_large`."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return json_body(parser_context["request"]._request)
        except ValueError:
            raise InvalidInput(BODY_NOT_JSON, fields={}) from None


class ShopAPIView(APIView):
    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()
    parser_classes = (ShopJSONParser,)
    renderer_classes = (JSONRenderer,)
    content_negotiation_class = JsonOnlyNegotiation
    metadata_class = None  # OPTIONS answers 405, as it did before DRF
    # Checked in this order; the first one over its rate refuses the request.
    rate_limits: tuple[Limit, ...] = ()
    # A POST must say Content-Type: application/json (415 otherwise): for a
    # view that acts without a token, so no other site's form can trigger it.
    json_body_required = False

    def initial(self, request, *args, **kwargs):
        # Before the rate limits: a refused cross-site post spends no budget.
        if self.json_body_required and request.method == "POST" and not _is_json(request._request):
            raise UnsupportedMediaType()
        super().initial(request, *args, **kwargs)

    def perform_authentication(self, request):
        # Nothing to authenticate, and touching request.user here would
        # replace Django's lazy user on the request with DRF's None.
        pass

    def check_throttles(self, request):
        limits_check(request=request._request, limits=self.rate_limits)


def _is_json(request) -> bool:
    # Django's content_type is the media type without its parameters (charset).
    return (request.content_type or "").lower() == "application/json"


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
