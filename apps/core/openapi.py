"""Pieces of the OpenAPI schema (drf-spectacular) the API views share: the
error body, error answers with an example per code, and the headers."""

from collections import defaultdict

from django.utils import translation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from .errors import ShopError


class ErrorSerializer(serializers.Serializer):
    """{"error", "detail", ...}: what ShopError.as_json answers."""

    def get_fields(self):
        # Listed here rather than declared: "fields" (InvalidInput's messages
        # per field) would shadow Serializer.fields as a class attribute.
        return {
            "error": serializers.CharField(
                help_text="A stable code (e.g. `sold_out`); match on this, not on `detail`."
            ),
            "detail": serializers.CharField(help_text="Human text, in the request's language (Accept-Language)."),
            "fields": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField()),
                required=False,
                help_text="`invalid` only: the messages of each field that was refused.",
            ),
            "captcha_url": serializers.CharField(
                required=False, help_text="`captcha_required` / `captcha_invalid`: where to get a captcha."
            ),
            "max_unpaid": serializers.IntegerField(
                required=False,
                help_text="`unpaid_limit`: how many unpaid orders a buyer (or one client address) may hold "
                "for this product.",
            ),
        }


def error_responses(*errors: ShopError) -> dict[int, OpenApiResponse]:
    """One documented answer per HTTP status, with each error's real body as
    an example (its detail in English, the source language)."""
    by_status: dict[int, list[ShopError]] = defaultdict(list)
    for error in errors:
        by_status[error.http_status].append(error)
    responses = {}
    for status, same_status in by_status.items():
        with translation.override(None):
            examples = [
                OpenApiExample(error.code, value=error.as_json(), response_only=True, status_codes=[status])
                for error in same_status
            ]
        codes = ", ".join(f"`{error.code}`" for error in same_status)
        retry = " With `Retry-After` (seconds)." if any(error.retry_after for error in same_status) else ""
        responses[status] = OpenApiResponse(ErrorSerializer, description=f"{codes}.{retry}", examples=examples)
    return responses


def retry_after_header(*statuses: int) -> OpenApiParameter:
    return OpenApiParameter(
        "Retry-After",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=list(statuses),
        description="Seconds to wait before trying again.",
    )


ORDER_TOKEN_HEADER = OpenApiParameter(
    "X-Order-Token",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The order's `access_token` from checkout. Without the right one the order is 404.",
)
