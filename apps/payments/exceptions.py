"""Why a payment notification or a payment request is refused. Each code is
returned verbatim by the webhook so a provider's dashboard shows the reason."""

from django.utils.translation import gettext_lazy as _

from apps.core.errors import ShopError


class UnknownProvider(ShopError):
    code = "unknown_provider"
    http_status = 404
    default_detail = _("No such payment provider.")


class InvalidSignature(ShopError):
    code = "invalid_signature"
    http_status = 400
    default_detail = _("The notification's signature is missing or wrong.")


class StaleNotification(ShopError):
    code = "stale_timestamp"
    http_status = 400
    default_detail = _("The notification's timestamp is outside the accepted window.")


class MalformedNotification(ShopError):
    code = "malformed_notification"
    http_status = 400
    default_detail = _("The notification could not be read.")


class WrongMerchant(ShopError):
    """Signed, but for another merchant account (epay's pid, Alipay's app_id)."""

    code = "wrong_merchant"
    http_status = 400
    default_detail = _("The notification is for another merchant account.")


class NotPaidNotification(ShopError):
    """Signed, but its status is not a completed payment (epay: not TRADE_SUCCESS)."""

    code = "not_a_payment"
    http_status = 400
    default_detail = _("The notification does not report a completed payment.")


class OrderNotPayable(ShopError):
    code = "not_payable"
    http_status = 409
    default_detail = _("This order cannot be paid now.")


class PaymentUnavailable(ShopError):
    """The provider is failing (or its circuit breaker is open). The order is
    untouched: it keeps its reservation and can be paid once this passes."""

    code = "payment_unavailable"
    http_status = 503
    default_detail = _("Payment is temporarily unavailable. Your order is kept: please try again in a few minutes.")
    retry_after = 30


class NotificationDeliveryFailed(Exception):
    """The webhook did not answer 2xx after every attempt; the task retries later."""


class PaymentMethodUnavailable(ShopError):
    """A method no enabled provider offers, or one that does not take the order's currency."""

    code = "method_unavailable"
    http_status = 400
    default_detail = _("This payment method is not available for this order.")


class NotificationIgnored(Exception):
    """A genuine notification (its signature verified) the shop has no use
    for: an event type it does not act on (Stripe sends many). Answered 2xx,
    so the provider does not send it again; nothing changes."""


class NotificationNotRecorded(ShopError):
    """The database failed while applying a notification: nothing changed, and
    the provider is asked to send it again."""

    code = "not_recorded"
    http_status = 503
    default_detail = _("The notification could not be recorded now. Please send it again.")
    retry_after = 30
