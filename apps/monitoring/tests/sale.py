"""Drive a small sale through the public HTTP paths, and read /metrics."""

from prometheus_client.parser import text_string_to_metric_families

from apps.payments.sandbox_server import SIGNATURE_HEADER, notification_sign
from apps.payments.tests.factories import PaidNotificationFactory


def checkout(client, *, sku: str, email: str, quantity: int = 1):
    return client.post(
        "/api/v1/orders", {"sku": sku, "email": email, "quantity": quantity}, content_type="application/json"
    )


def pay(client, *, order, signature: str | None = None, with_signature: bool = False):
    """POST the sandbox's signed "paid" notification for the order to the webhook."""
    body, headers = notification_sign(PaidNotificationFactory(order=order))
    signature = signature or headers[SIGNATURE_HEADER]
    response = client.post(
        "/payments/webhook/sandbox", body, content_type="application/json", headers={SIGNATURE_HEADER: signature}
    )
    return (response, signature) if with_signature else response


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label pairs): value} of a Prometheus text page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(page: dict, name: str, **labels) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)
