"""The notification settings in the admin: write-only secrets stored
encrypted, channels checked before they are saved; deliveries with their
attempts, read-only."""

import pytest
from django.urls import reverse

from apps.cardkeys.crypto import decrypt_secret
from apps.catalog.tests.factories import ProductFactory
from apps.notifications.models import Delivery, DeliveryAttempt, NotificationSettings
from apps.notifications.selectors import notification_settings_get

pytestmark = pytest.mark.django_db


def settings_url():
    return reverse("admin:notifications_notificationsettings_change", args=[notification_settings_get().pk])


def form_data(**fields):
    data = {
        "notify_paid_orders": "on",
        "notify_low_stock": "on",
        "low_stock_threshold": "5",
        "email_recipients": "",
        "webhook_url": "",
        "webhook_secret": "",
        "telegram_chat_id": "",
        "telegram_bot_token": "",
    }
    data.update(fields)
    return data


def test_the_list_opens_the_one_settings_row(admin_client):
    response = admin_client.get(reverse("admin:notifications_notificationsettings_changelist"))
    assert response.status_code == 302 and response["Location"] == settings_url()
    assert admin_client.get(settings_url()).status_code == 200


def test_secrets_are_stored_encrypted_never_shown_and_kept_when_left_blank(admin_client):
    data = form_data(
        email_enabled="on",
        email_recipients="boss@shop.example, ops@shop.example",
        webhook_enabled="on",
        webhook_url="https://hooks.shop.example/cardshop",
        webhook_secret="whsec-very-secret",
        telegram_enabled="on",
        telegram_chat_id="-1001",
        telegram_bot_token="42:bot-token-secret",
    )
    response = admin_client.post(settings_url(), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    row = NotificationSettings.objects.get()
    assert "whsec-very-secret" not in row.webhook_secret_encrypted
    assert decrypt_secret(row.webhook_secret_encrypted) == "whsec-very-secret"
    assert decrypt_secret(row.telegram_bot_token_encrypted) == "42:bot-token-secret"
    assert row.recipient_list() == ["boss@shop.example", "ops@shop.example"]
    assert row.enabled_channels() == ["email", "webhook", "telegram"]
    page = admin_client.get(settings_url()).content.decode()
    assert "whsec-very-secret" not in page and "42:bot-token-secret" not in page

    # Saved again with the secret fields blank: the stored ones stay.
    response = admin_client.post(settings_url(), {**data, "webhook_secret": "", "telegram_bot_token": ""})
    assert response.status_code == 302
    assert NotificationSettings.objects.get().webhook_secret == "whsec-very-secret"


def test_an_enabled_channel_needs_what_it_sends_with(admin_client):
    response = admin_client.post(
        settings_url(),
        form_data(email_enabled="on", email_recipients="not-an-address", webhook_enabled="on", telegram_enabled="on"),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {
        "email_recipients",
        "webhook_url",
        "webhook_secret",
        "telegram_chat_id",
        "telegram_bot_token",
    }
    assert not NotificationSettings.objects.get().email_enabled


def test_a_delivery_page_lists_its_attempts_read_only(admin_client):
    delivery = Delivery.objects.create(
        event=Delivery.Event.STOCK_LOW,
        channel=Delivery.Channel.WEBHOOK,
        event_id="evt_x",
        dedupe_key="stock.low:product:1:1:webhook",
        product=ProductFactory(),
        subject="Low stock",
        text="Low stock",
        payload={"id": "evt_x"},
        attempts=2,
        status=Delivery.Status.SENT,
    )
    DeliveryAttempt.objects.create(delivery=delivery, number=1, succeeded=False, http_status=502, retry_in_seconds=5)
    DeliveryAttempt.objects.create(delivery=delivery, number=2, succeeded=True, http_status=200)
    page = admin_client.get(reverse("admin:notifications_delivery_change", args=[delivery.pk])).content.decode()
    assert "502" in page and "evt_x" in page
    assert 'name="_save"' not in page
    listing = admin_client.get(reverse("admin:notifications_delivery_changelist")).content.decode()
    assert "evt_x" not in listing or "Low stock" not in listing  # the list shows the columns, not the body
    assert reverse("admin:notifications_delivery_change", args=[delivery.pk]) in listing
