import hashlib
import hmac

from apps.cardkeys.crypto import encrypt_secret
from apps.notifications.models import NotificationSettings

MERCHANT_EMAIL = "merchant@shop.example"
WEBHOOK_SECRET = "whsec-test-0123456789"
BOT_TOKEN = "123456:ABC-test-token"
CHAT_ID = "-100200300"


def notifications_configure(*, webhook_url: str = "", telegram: bool = False, email: bool = False, **fields):
    """The shop's notification settings with the named channels on."""
    values = {
        "email_enabled": email,
        "email_recipients": MERCHANT_EMAIL if email else "",
        "webhook_enabled": bool(webhook_url),
        "webhook_url": webhook_url,
        "webhook_secret_encrypted": encrypt_secret(WEBHOOK_SECRET) if webhook_url else "",
        "telegram_enabled": telegram,
        "telegram_chat_id": CHAT_ID if telegram else "",
        "telegram_bot_token_encrypted": encrypt_secret(BOT_TOKEN) if telegram else "",
        **fields,
    }
    NotificationSettings.objects.update_or_create(pk=1, defaults=values)


def signature_valid(*, header: str, body: bytes, secret: str) -> bool:
    """The receiver's check, written from docs/notifications.md alone:
    X-Cardshop-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>." + body)>."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])
