"""The API's OpenAPI schema (/api/v1/schema), its docs (/api/docs), and the
API's answers holding to what the schema says."""

import json
import re
from unittest import mock

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.validation import validate_schema

from apps.orders.tests.support import product_with_keys
from apps.payments.sandbox_server import sandbox_notification_deliver_task

CHECKOUT_ERRORS = {
    400: {"invalid", "page_token_invalid", "too_fast", "coupon_invalid"},
    403: {"captcha_required", "captcha_invalid"},
    404: {"product_not_found"},
    409: {
        "sold_out",
        "limit_exceeded",
        "unpaid_limit",
        "sale_not_started",
        "sale_ended",
        "coupon_expired",
        "coupon_used_up",
        "coupon_limit_exceeded",
        "coupon_not_applicable",
    },
    413: {"request_too_large"},
    415: {"unsupported_media_type"},
    422: {"idempotency_key_reused"},
    429: {"rate_limited"},
    503: {"sale_paused"},
}


@pytest.fixture(scope="module")
def schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True)))


def operation(schema: dict, path: str, method: str) -> dict:
    return schema["paths"][path][method]


def example_codes(response: dict) -> set[str]:
    examples = response["content"]["application/json"]["examples"]
    return {example["value"]["error"] for example in examples.values()}


def header_names(op: dict) -> set[str]:
    return {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}


def test_the_schema_is_valid_openapi_and_generates_without_warnings(tmp_path):
    # --fail-on-warn: an endpoint drf-spectacular had to guess about fails here.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    validate_schema(yaml.safe_load((tmp_path / "schema.yaml").read_text()))


def test_the_schema_is_json_by_default_and_yaml_on_request(client):
    default = client.get("/api/v1/schema")
    assert default.status_code == 200
    assert default["Content-Type"].startswith("application/vnd.oai.openapi+json")
    as_json = json.loads(default.content)
    validate_schema(as_json)
    assert as_json["openapi"].startswith("3.")

    by_query = client.get("/api/v1/schema?format=yaml")
    by_accept = client.get("/api/v1/schema", headers={"Accept": "application/yaml"})
    by_oai_accept = client.get("/api/v1/schema", headers={"Accept": "application/vnd.oai.openapi"})
    for response in (by_query, by_accept, by_oai_accept):
        assert response.status_code == 200
        assert "yaml" in response["Content-Type"] or response["Content-Type"].startswith("application/vnd.oai.openapi;")
        assert not response.content.lstrip().startswith(b"{")
        assert yaml.safe_load(response.content) == as_json


def _routes(patterns, prefix: str = ""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern


def test_every_api_url_is_in_the_schema(schema):
    api_routes = {
        "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        for route, pattern in _routes(get_resolver().url_patterns)
        if route.startswith("api/") and pattern.name != "api-docs"  # the docs page is HTML for people
    }
    # Guards the walk itself: these are the API of the README.
    assert {"/api/v1/orders", "/api/v1/orders/{order_no}", "/api/v1/products/{sku}", "/api/v1/captcha"} <= api_routes
    assert "/api/v1/payments/sandbox/{order_no}/pay" in api_routes
    assert api_routes - set(schema["paths"]) == set()


def test_checkout_documents_its_body_headers_and_every_error_code(schema):
    op = operation(schema, "/api/v1/orders", "post")
    body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert {"sku", "quantity", "email", "page_token", "coupon"} <= set(
        schema["components"]["schemas"][body]["properties"]
    )
    assert {"Idempotency-Key", "X-Page-Token"} <= header_names(op)
    assert "202" in op["responses"]
    for status, codes in CHECKOUT_ERRORS.items():
        assert example_codes(op["responses"][str(status)]) == codes, status
    for status in ("429", "503"):
        assert "Retry-After" in op["responses"][status]["headers"]


@pytest.mark.parametrize(
    ("path", "method", "errors", "headers"),
    [
        ("/api/v1/orders/{order_no}", "get", {404: {"order_not_found"}, 410: {"order_not_placed"}}, {"X-Order-Token"}),
        ("/api/v1/products/{sku}", "get", {404: {"product_not_found"}}, set()),
        (
            "/api/v1/payments/sandbox/{order_no}/pay",
            "post",
            {
                400: {"invalid"},
                404: {"order_not_found", "unknown_provider"},
                409: {"not_payable"},
                413: {"request_too_large"},
                429: {"rate_limited"},
                503: {"payment_unavailable"},
            },
            {"X-Order-Token"},
        ),
    ],
)
def test_each_endpoint_documents_its_errors_and_headers(schema, path, method, errors, headers):
    op = operation(schema, path, method)
    for status, codes in errors.items():
        assert example_codes(op["responses"][str(status)]) == codes, status
    assert headers <= header_names(op)


def test_the_docs_page_is_served_offline(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/api/v1/schema" in html
    # No CDN, no font service, no online validator: nothing outside this site.
    assert re.findall(r"(?:https?:)?//[\w.-]+\.\w+", html) == []
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a static file of this site"


# --- the answers hold to the schema


def _component(schema: dict, ref_holder: dict) -> dict:
    name = ref_holder["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    return schema["components"]["schemas"][name]


def assert_answers_as_documented(schema: dict, path: str, method: str, response) -> None:
    documented = operation(schema, path, method)["responses"]
    assert str(response.status_code) in documented, f"{response.status_code} not documented for {method} {path}"
    component = _component(schema, documented[str(response.status_code)])
    body = response.json()
    assert set(body) <= set(component["properties"]), f"undocumented fields {set(body) - set(component['properties'])}"
    assert set(component.get("required", [])) <= set(body), f"missing {set(component['required']) - set(body)}"


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_what_its_schema_says(client, schema):
    product = product_with_keys(keys=1, per_buyer_limit=1)
    checkout = client.post(
        "/api/v1/orders", data={"sku": product.sku, "email": "a@x.com"}, content_type="application/json"
    )
    assert checkout.status_code == 202
    assert_answers_as_documented(schema, "/api/v1/orders", "post", checkout)
    sold_out = client.post(
        "/api/v1/orders", data={"sku": product.sku, "email": "b@x.com"}, content_type="application/json"
    )
    assert sold_out.json()["error"] == "sold_out"
    assert_answers_as_documented(schema, "/api/v1/orders", "post", sold_out)
    invalid = client.post("/api/v1/orders", data={"sku": product.sku, "email": "bad"}, content_type="application/json")
    assert invalid.json()["error"] == "invalid"
    assert_answers_as_documented(schema, "/api/v1/orders", "post", invalid)
    not_json = client.post("/api/v1/orders", data="{}", content_type="text/plain")
    assert not_json.json()["error"] == "unsupported_media_type"
    assert_answers_as_documented(schema, "/api/v1/orders", "post", not_json)

    order_no, token = checkout.json()["order_no"], checkout.json()["access_token"]
    detail = client.get(f"/api/v1/orders/{order_no}", headers={"X-Order-Token": token})
    assert detail.status_code == 200
    assert_answers_as_documented(schema, "/api/v1/orders/{order_no}", "get", detail)
    unknown = client.get(f"/api/v1/orders/{order_no}", headers={"X-Order-Token": "wrong"})
    assert_answers_as_documented(schema, "/api/v1/orders/{order_no}", "get", unknown)

    for sku in (product.sku, "NOPE"):
        assert_answers_as_documented(schema, "/api/v1/products/{sku}", "get", client.get(f"/api/v1/products/{sku}"))
    assert_answers_as_documented(schema, "/api/v1/captcha", "get", client.get("/api/v1/captcha"))

    with mock.patch.object(sandbox_notification_deliver_task, "delay"):
        paid = client.post(f"/api/v1/payments/sandbox/{order_no}/pay", headers={"X-Order-Token": token})
    assert paid.status_code == 202
    assert_answers_as_documented(schema, "/api/v1/payments/sandbox/{order_no}/pay", "post", paid)
