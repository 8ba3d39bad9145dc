"""Sending one delivery through its channel: the merchant's mailbox, a signed
webhook, or a Telegram bot message. Each raises ChannelFailed with the reason
(never a secret: the bot token is part of the Bot API's URL and is masked out
of every error).

The webhook's signature (docs/notifications.md):
    X-Cardshop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
computed over the exact bytes of the body, as Stripe signs its webhooks; the
event id (also in the body's "id") is sent as X-Cardshop-Event-Id for dedupe."""

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import EmailMessage

from .messages import delivery_payload, delivery_text
from .models import Delivery, NotificationSettings

SIGNATURE_HEADER = "X-Cardshop-Signature"
EVENT_ID_HEADER = "X-Cardshop-Event-Id"
EVENT_HEADER = "X-Cardshop-Event"
USER_AGENT = "cardshop-notifications/1"


class ChannelFailed(Exception):
    """A try failed. `permanent`: retrying cannot help (the Bot API refused the
    token or the chat); `retry_after`: the receiver asked to wait that long."""

    def __init__(self, reason: str, *, http_status: int | None = None, retry_after: int = 0, permanent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status
        self.retry_after = retry_after
        self.permanent = permanent


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The value of the X-Cardshop-Signature header."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def delivery_send(*, delivery: Delivery, config: NotificationSettings) -> int | None:
    """Send the delivery once through its channel; the HTTP status for the
    HTTP channels. Raises ChannelFailed."""
    if delivery.channel == Delivery.Channel.EMAIL:
        return _email_send(delivery=delivery, config=config)
    if delivery.channel == Delivery.Channel.WEBHOOK:
        return _webhook_send(delivery=delivery, config=config)
    if delivery.channel == Delivery.Channel.TELEGRAM:
        return _telegram_send(delivery=delivery, config=config)
    raise ChannelFailed(f"unknown channel {delivery.channel}", permanent=True)


def _email_send(*, delivery: Delivery, config: NotificationSettings) -> None:
    recipients = config.recipient_list()
    if not recipients:
        raise ChannelFailed("no email recipient is set", permanent=True)
    try:
        EmailMessage(subject=delivery.subject, body=delivery_text(delivery), to=recipients).send()
    except Exception as exc:  # the mail backend's own errors (SMTP, socket)
        raise ChannelFailed(f"{type(exc).__name__}: {exc}") from exc
    return None


def _webhook_send(*, delivery: Delivery, config: NotificationSettings) -> int:
    if not (config.webhook_url and config.webhook_secret_encrypted):
        raise ChannelFailed("the webhook URL or secret is not set", permanent=True)
    body = json.dumps(delivery_payload(delivery), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = {
        SIGNATURE_HEADER: webhook_signature(secret=config.webhook_secret, timestamp=int(time.time()), body=body),
        EVENT_ID_HEADER: delivery.event_id,
        EVENT_HEADER: delivery.event,
    }
    status, answer = _post_json(config.webhook_url, body, headers)
    if not 200 <= status < 300:
        raise ChannelFailed(f"HTTP {status}: {answer[:200].decode('utf-8', 'replace')}", http_status=status)
    return status


def _telegram_send(*, delivery: Delivery, config: NotificationSettings) -> int:
    token = config.telegram_bot_token
    if not (token and config.telegram_chat_id):
        raise ChannelFailed("the Telegram bot token or chat id is not set", permanent=True)
    url = f"{settings.TELEGRAM_API_BASE.rstrip('/')}/bot{token}/sendMessage"
    body = json.dumps(
        {"chat_id": config.telegram_chat_id, "text": delivery_text(delivery), "disable_web_page_preview": True},
        ensure_ascii=False,
    ).encode("utf-8")
    try:
        status, answer = _post_json(url, body, {})
    except ChannelFailed as exc:
        exc.reason = exc.reason.replace(token, "<token>")
        exc.args = (exc.reason,)
        raise
    try:
        reply = json.loads(answer)
    except ValueError:
        reply = {}
    if status == 200 and reply.get("ok") is True:
        return status
    description = str(reply.get("description") or answer[:200].decode("utf-8", "replace")).replace(token, "<token>")
    retry_after = int((reply.get("parameters") or {}).get("retry_after") or 0)
    # 429 (flood control) and 5xx pass; a refused token or chat does not.
    permanent = status in (400, 401, 403, 404)
    raise ChannelFailed(
        f"HTTP {status}: {description}", http_status=status, retry_after=retry_after, permanent=permanent
    )


def _post_json(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST a JSON body; (status, answer), an HTTP error status being an
    answer like any other. Raises ChannelFailed when no answer came."""
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_HTTP_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError) as exc:  # no connection, a timeout, a malformed URL
        raise ChannelFailed(f"{type(exc).__name__}: {exc}") from exc
