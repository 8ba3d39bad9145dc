"""Payment events in the admin: shown, never written there (the webhook is
their one writer, in the order's transaction)."""

import pytest

pytestmark = pytest.mark.django_db


def test_payment_events_are_read_only_in_the_admin(admin_client):
    assert admin_client.get("/admin/payments/paymentevent/").status_code == 200
    assert admin_client.get("/admin/payments/paymentevent/add/").status_code == 403
