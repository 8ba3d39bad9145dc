"""The order link a delivery mail carries: signed and expiring, so it opens
the order in any browser (the mail has no access token to give; the shop
keeps only the token's hash). Opening it grants that browser the order as
the lookup page would (apps.orders.grants), and the signature leaves the
address bar at once.

Whoever holds the mail holds the keys anyway (they are in it); the expiry
(ORDER_LINK_MAX_AGE_DAYS) bounds how long a forwarded or leaked mail opens
the order page too. After it, the lookup page asks for the email."""

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "cardshop.order-link"


class OrderLinkExpired(Exception):
    pass


class OrderLinkInvalid(Exception):
    pass


def order_link_path(*, order_no: str) -> str:
    """The path (no host) of the order's signed link, valid from now."""
    signed = signing.TimestampSigner(salt=SALT).sign(order_no)
    # "order_no:timestamp:signature": the number is already in the path.
    signature = signed.removeprefix(f"{order_no}:")
    return reverse("orders:open", kwargs={"order_no": order_no, "signature": signature})


def order_link_check(*, order_no: str, signature: str) -> None:
    """Raises OrderLinkInvalid (tampered, or another order's) or
    OrderLinkExpired (older than ORDER_LINK_MAX_AGE_DAYS)."""
    signer = signing.TimestampSigner(salt=SALT)
    try:
        signer.unsign(f"{order_no}:{signature}", max_age=settings.ORDER_LINK_MAX_AGE_DAYS * 24 * 60 * 60)
    except signing.SignatureExpired:
        raise OrderLinkExpired() from None
    except signing.BadSignature:
        raise OrderLinkInvalid() from None
