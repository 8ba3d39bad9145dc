"""Order numbers, access tokens and buyer identities."""

import base64
import hashlib
import hmac
import secrets

from django.conf import settings
from django.utils import timezone

from apps.core.client_ip import ip_counted, ip_in_networks

# Crockford-style alphabet: no I, L, O, U, so numbers survive being read aloud.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def order_number_new(*, product_id: int) -> str:
    """Date, product id, 60 random bits: unguessable, sortable by day, and the
    product id lets a queued order be found in its product's Redis keys."""
    bits = int.from_bytes(secrets.token_bytes(8), "big") >> 4  # 60 bits, one call on the hot path
    random_part = "".join(_ALPHABET[(bits >> shift) & 31] for shift in range(55, -1, -5))
    return f"{timezone.now():%y%m%d}-{product_id}-{random_part}"


def order_number_product_id(order_no: str) -> int | None:
    parts = order_no.split("-")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return int(parts[1])


def access_token_for(*, order_no: str) -> str:
    """The order's access token: an HMAC of its number under ORDER_TOKEN_KEY,
    not a random string, so the shop can tell later that it issued this pair
    without having stored anything. When neither MariaDB nor Redis knows a
    number whose token verifies, the shop answered 202 for it and then lost it
    (a Redis failover or flush before persistence), and can say so to the buyer.
    The number's 60 random bits keep tokens unguessable; only the hash is kept."""
    digest = hmac.new(_order_token_key(), f"order-token\0{order_no}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def access_token_verify(*, order_no: str, token: str) -> bool:
    """Was this token issued for this order number (whether or not the order exists)?"""
    if not isinstance(token, str) or not token or not isinstance(order_no, str):
        return False
    return hmac.compare_digest(access_token_for(order_no=order_no), token)


def _order_token_key() -> bytes:
    # Unset: derived from the fingerprint key, which production already insists
    # on and which never changes (a label keeps the two uses apart).
    if settings.ORDER_TOKEN_KEY:
        return settings.ORDER_TOKEN_KEY.encode()
    return hmac.new(settings.CARDKEY_FINGERPRINT_KEY.encode(), b"order-token-key", hashlib.sha256).digest()


def access_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# Mail providers that ignore dots in an address's local part
# ("j.doe@gmail.com" reaches "jdoe@gmail.com"), each with the domain its
# aliases share. The one list; add a provider here.
DOTS_IGNORED_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def email_normalise(email: str) -> str:
    """The mailbox an address reaches, for limits, rate limits and the
    idempotency key's scope: lower case, without a "+tag", and without dots
    where the provider ignores them. "Hoarder+1@Gmail.com" and
    "hoarder@googlemail.com" are one buyer. Orders keep and mail the address
    as typed."""
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at:
        return email
    # Sub-addressing: almost every provider delivers "name+tag" to "name".
    local = local.split("+", 1)[0]
    if domain in DOTS_IGNORED_DOMAINS:
        local, domain = local.replace(".", ""), DOTS_IGNORED_DOMAINS[domain]
    return f"{local}@{domain}"


def buyer_identity(*, email: str) -> str:
    """What the per-buyer limit counts by; a hash, so Redis holds no address."""
    return hashlib.sha256(email_normalise(email).encode("utf-8")).hexdigest()[:32]


def idempotency_digest(*, email: str, key: str) -> str:
    """Scoped to the buyer, so one buyer's key never returns another's order
    (nor tells a stranger that the key is taken). The product is the other
    half of the scope: the record lives under the product's hash tag."""
    return hashlib.sha256(f"{email_normalise(email)}\0{key}".encode()).hexdigest()[:40]


def idempotency_fingerprint(*, sku: str, quantity: int, email: str) -> str:
    """What a request with an idempotency key asked for, stored with its
    order: a retry must ask for the same (the email as typed, since that is
    where the keys are mailed), or it is a reused key."""
    return hashlib.sha256(f"{sku}\0{quantity}\0{email}".encode()).hexdigest()[:16]


def _hashed(kind: str, value: str) -> str:
    return f"{kind}:" + hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()[:24]


def buyer_identities(*, email: str, product, context) -> list[str]:
    """Every identity the product's per-buyer limits count this buyer by: the
    email always, plus the logged-in account, the device cookie and the client
    IP where the merchant turned them on. Hashed: Redis holds no address.

    A buyer without a device cookie counts as the one cookie-less device, so
    dropping cookies does not reset the limit."""
    identities = ["e:" + buyer_identity(email=email)]
    if product.limit_by_account and context.account_id:
        identities.append(_hashed("a", str(context.account_id)))
    if product.limit_by_device:
        identities.append(_hashed("d", context.device_id or "-"))
    if product.limit_by_ip and context.ip:
        identities.append(client_identity(ip=context.ip))
    return identities


def client_identity(*, ip: str) -> str:
    """The client address as the limits count it (an IPv6 client by its /64)."""
    return _hashed("i", ip_counted(ip))


def unpaid_cap_identity(*, ip: str) -> str:
    """The identity UNPAID_CAP_PER_IP counts this client by, or "" when the
    cap does not apply: it is off, the address is unknown, or it is in
    UNPAID_CAP_EXEMPT_NETWORKS (many buyers behind one address)."""
    if not settings.UNPAID_CAP_PER_IP or not ip or ip_in_networks(ip, settings.UNPAID_CAP_EXEMPT_NETWORKS):
        return ""
    return client_identity(ip=ip)


def strike_fields(*, ip: str, device_id: str) -> tuple[str, str]:
    """The client's fields in a product's strike counter (apps.orders.bot_checks):
    its IP and its device cookie, hashed; "" for one it does not have."""
    return (_hashed("i", ip) if ip else "", _hashed("d", device_id) if device_id else "")
