import io

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command
from django.db import connection

from apps.cardkeys.crypto import (
    decrypt_secret,
    encrypt_secret,
    fingerprint_secret,
    is_current_token,
    mask_secret,
)
from apps.cardkeys.models import CardKey
from apps.cardkeys.services import cardkeys_import
from apps.catalog.tests.factories import ProductFactory

from .factories import CardKeyFactory

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def test_encryption_round_trip_and_fresh_tokens():
    token = encrypt_secret("卡密-ABC-123")
    assert decrypt_secret(token) == "卡密-ABC-123"
    assert "ABC" not in token
    assert encrypt_secret("卡密-ABC-123") != token  # random IV: equal secrets do not look equal


def test_fingerprint_is_keyed_and_normalised(settings):
    assert fingerprint_secret("ABC") == fingerprint_secret(" ＡＢＣ ")
    assert fingerprint_secret("ABC") != fingerprint_secret("ABD")
    first = fingerprint_secret("ABC")
    settings.CARDKEY_FINGERPRINT_KEY = "another-key"
    assert fingerprint_secret("ABC") != first
    assert len(first) == 64


def test_mask_shows_four_characters_and_never_half_of_a_short_key():
    assert mask_secret("ABCDEFGH-1234") == "ABCD****"
    assert mask_secret("ABCD") == "AB****"
    assert mask_secret("A") == "****"


@pytest.mark.django_db
def test_rotation_reencrypts_under_the_new_key_and_drops_the_old(settings):
    settings.CARDKEY_ENCRYPTION_KEYS = [OLD_KEY]
    product = ProductFactory()
    cardkeys_import(product=product, source=io.BytesIO(b"".join(b"ROT-%d\n" % i for i in range(25))), file_name="k.txt")
    old_tokens = dict(CardKey.objects.values_list("id", "secret_encrypted"))

    settings.CARDKEY_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert not any(is_current_token(t) for t in old_tokens.values())
    out = io.StringIO()
    call_command("rotate_cardkey_encryption", "--chunk-size", "10", stdout=out)
    assert "25 keys re-encrypted, 0 already under the current key." in out.getvalue()

    new_tokens = dict(CardKey.objects.values_list("id", "secret_encrypted"))
    assert all(new_tokens[i] != old_tokens[i] for i in old_tokens)
    with pytest.raises(InvalidToken):
        Fernet(OLD_KEY.encode()).decrypt(next(iter(new_tokens.values())).encode())

    # Only the new key is needed now.
    settings.CARDKEY_ENCRYPTION_KEYS = [NEW_KEY]
    assert sorted(k.secret for k in CardKey.objects.all()) == sorted(f"ROT-{i}" for i in range(25))

    out = io.StringIO()
    call_command("rotate_cardkey_encryption", stdout=out)
    assert "0 keys re-encrypted, 25 already under the current key." in out.getvalue()


@pytest.mark.django_db
def test_rotation_reports_keys_no_configured_key_opens(settings):
    settings.CARDKEY_ENCRYPTION_KEYS = [OLD_KEY]
    lost = CardKeyFactory(secret="LOST")
    settings.CARDKEY_ENCRYPTION_KEYS = [NEW_KEY]
    kept = CardKeyFactory(secret="KEPT")
    with pytest.raises(CommandError, match=f"ids: {lost.pk}"):
        call_command("rotate_cardkey_encryption", stdout=io.StringIO())
    kept.refresh_from_db()
    assert kept.secret == "KEPT"


@pytest.mark.django_db
def test_stored_column_never_holds_the_plaintext():
    key = CardKeyFactory(secret="VISIBLE-PLAINTEXT-42")
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted, fingerprint FROM cardkeys_cardkey WHERE id = %s", [key.pk])
        token, fingerprint = cursor.fetchone()
    assert "VISIBLE" not in token and "PLAINTEXT" not in token and "VISIBLE" not in fingerprint
    assert decrypt_secret(token) == "VISIBLE-PLAINTEXT-42"


@pytest.mark.django_db
def test_rotation_also_reencrypts_reusable_keys_and_manual_deliveries(settings):
    """They are under the same keys: dropping the old key after a rotation
    must leave them readable."""
    from apps.catalog.services import reusable_key_encrypt
    from apps.orders.selectors import order_delivery_reveal
    from apps.orders.tests.factories import OrderFactory

    settings.CARDKEY_ENCRYPTION_KEYS = [OLD_KEY]
    product = ProductFactory(delivery_kind="reusable_key", reusable_key_encrypted=reusable_key_encrypt(secret="R-1"))
    shared = OrderFactory(product=product, status="delivered", reusable_key_encrypted=product.reusable_key_encrypted)
    manual = OrderFactory(status="delivered", manual_content_encrypted=encrypt_secret("Topped up 42"))

    settings.CARDKEY_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    out = io.StringIO()
    call_command("rotate_cardkey_encryption", stdout=out)
    assert "3 keys re-encrypted" in out.getvalue()

    settings.CARDKEY_ENCRYPTION_KEYS = [NEW_KEY]
    product.refresh_from_db()
    assert decrypt_secret(product.reusable_key_encrypted) == "R-1"
    assert order_delivery_reveal(type(shared).objects.get(id=shared.id)).keys == ["R-1"]
    assert order_delivery_reveal(type(manual).objects.get(id=manual.id)).content == "Topped up 42"


@pytest.mark.django_db
def test_rotation_also_reencrypts_buyer_input_and_the_merchants_notification_secrets(settings):
    """Checkout field values (on orders and notification records) and the
    webhook secret and bot token are under the same keys too."""
    from apps.notifications.models import Delivery, NotificationSettings
    from apps.orders.input_fields import input_values_seal, order_input_values
    from apps.orders.tests.factories import OrderFactory

    settings.CARDKEY_ENCRYPTION_KEYS = [OLD_KEY]
    typed = [{"key": "account_id", "label_zh": "账号", "label_en": "Account", "value": "778899"}]
    order = OrderFactory(status="delivered", input_values=input_values_seal(typed))
    NotificationSettings.objects.create(
        webhook_secret_encrypted=encrypt_secret("whsec-1"), telegram_bot_token_encrypted=encrypt_secret("123:abc")
    )
    Delivery.objects.create(
        event="order.paid",
        channel="webhook",
        event_id="evt_1",
        dedupe_key="order.paid:1:webhook",
        order=order,
        subject="s",
        text="t",
        payload={"data": {}},
        buyer_input_sealed=encrypt_secret("[]"),
    )

    settings.CARDKEY_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    call_command("rotate_cardkey_encryption", stdout=io.StringIO())

    settings.CARDKEY_ENCRYPTION_KEYS = [NEW_KEY]
    assert [value for _label, value in order_input_values(type(order).objects.get(id=order.id))] == ["778899"]
    config = NotificationSettings.objects.get()
    assert (config.webhook_secret, config.telegram_bot_token) == ("whsec-1", "123:abc")
    assert decrypt_secret(Delivery.objects.get().buyer_input_sealed) == "[]"
