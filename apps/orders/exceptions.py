from django.utils.translation import gettext_lazy as _

from apps.core.errors import InvalidInput, RateLimited, ShopError

__all__ = [
    "InvalidInput",
    "ProductNotFound",
    "SoldOut",
    "UnpaidLimit",
    "IdempotencyKeyReused",
    "RateLimited",
    "PageTokenInvalid",
    "TooFast",
    "CaptchaRequired",
    "CaptchaInvalid",
    "LimitExceeded",
    "SaleNotStarted",
    "SaleEnded",
    "SalePaused",
    "OrderNotFound",
    "OrderNotPlaced",
    "OrderNotCancellable",
    "OrderPending",
    "PaymentMismatch",
    "RefundMismatch",
    "EventIdReused",
    "OrderNotAwaitingManualDelivery",
    "StockShort",
]


class ProductNotFound(ShopError):
    code = "product_not_found"
    http_status = 404
    default_detail = _("This product does not exist or is not on sale.")


class SoldOut(ShopError):
    code = "sold_out"
    http_status = 409
    default_detail = _("Sold out.")


class LimitExceeded(ShopError):
    code = "limit_exceeded"
    http_status = 409
    default_detail = _("You have reached the purchase limit for this product.")


class UnpaidLimit(ShopError):
    """The buyer already holds as many unpaid reservations as allowed."""

    code = "unpaid_limit"
    http_status = 409
    default_detail = _("You already have an unpaid order for this product. Pay it or let it expire first.")


class IdempotencyKeyReused(ShopError):
    """An Idempotency-Key already spent on an order that asked for something
    else (another quantity, another email): Stripe's 422. A retry must send
    what the first request sent."""

    code = "idempotency_key_reused"
    http_status = 422
    default_detail = _(
        "This Idempotency-Key was already used for an order with other details. "
        "Send the same details to get that order, or use a new key for a new order."
    )


class PageTokenInvalid(ShopError):
    """The checkout did not come from a product page fetched long enough ago."""

    code = "page_token_invalid"
    http_status = 400
    default_detail = _("Please open the product page again and retry.")


class TooFast(ShopError):
    code = "too_fast"
    http_status = 400
    default_detail = _("That was quicker than a person can be. Please wait a moment and submit again.")


class CaptchaRequired(ShopError):
    """Too many suspicious attempts from this client: a captcha first."""

    code = "captcha_required"
    http_status = 403
    default_detail = _("Please solve the captcha.")


class CaptchaInvalid(CaptchaRequired):
    code = "captcha_invalid"
    default_detail = _("The captcha answer was wrong or has expired. Please solve the new one.")


class SaleNotStarted(ShopError):
    code = "sale_not_started"
    http_status = 409
    default_detail = _("The sale has not started yet.")


class SaleEnded(ShopError):
    code = "sale_ended"
    http_status = 409
    default_detail = _("The sale has ended.")


class SalePaused(ShopError):
    """Stock is unknown (not warmed, or Redis unreachable): checkout fails closed."""

    code = "sale_paused"
    http_status = 503
    default_detail = _("The sale is paused for a moment. Please try again shortly.")
    retry_after = 5


class OrderNotFound(ShopError):
    code = "order_not_found"
    http_status = 404
    default_detail = _("No such order.")


class OrderNotPlaced(ShopError):
    """The shop answered 202 for this order, then lost it before writing it to
    MariaDB (the gate Redis failed over to an empty replica, or was flushed)."""

    code = "order_not_placed"
    http_status = 410
    default_detail = _(
        "This order was not placed: it was lost before it could be recorded. Please buy again. "
        "If you had already paid for it, contact us with its order number."
    )


class OrderPending(ShopError):
    """The order is still being placed (a reservation not yet in MariaDB)."""

    code = "order_pending"
    http_status = 503
    default_detail = _("The order is still being placed. Please retry in a moment.")
    retry_after = 2


class PaymentMismatch(ShopError):
    code = "payment_mismatch"
    http_status = 400
    default_detail = _("The payment does not match the order's amount or currency.")


class OrderNotCancellable(ShopError):
    """Only an order that is not paid yet (queued or awaiting payment) can be cancelled."""

    code = "not_cancellable"
    http_status = 409
    default_detail = _("This order can no longer be cancelled.")


class RefundMismatch(ShopError):
    """A refund in another currency than the order's, or of more than was paid for it."""

    code = "refund_mismatch"
    http_status = 400
    default_detail = _("The refund does not match the order's payments in amount or currency.")


class EventIdReused(ShopError):
    """The provider's event id is already recorded for another order: never applied."""

    code = "event_id_reused"
    http_status = 409
    default_detail = _("This event id is already recorded for another order.")


class OrderNotAwaitingManualDelivery(ShopError):
    """Only a paid order of a manual-delivery product can be delivered by hand."""

    code = "not_awaiting_manual_delivery"
    http_status = 409
    default_detail = _("This order is not a paid order waiting for a manual delivery.")


class StockShort(ShopError):
    """The product's stock number no longer covers the order (the merchant
    lowered it below what orders hold)."""

    code = "stock_short"
    http_status = 409
    default_detail = _("The product's stock does not cover this order. Raise the stock first.")
