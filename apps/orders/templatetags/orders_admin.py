"""The admin dashboard's line about the merchant's manual-delivery queue."""

from django import template

from apps.orders.selectors import manual_delivery_overdue_cutoff, orders_awaiting_manual_delivery

register = template.Library()


@register.inclusion_tag("admin/orders/_manual_queue.html")
def manual_delivery_queue():
    waiting = orders_awaiting_manual_delivery()
    return {
        "awaiting": waiting.count(),
        "overdue": waiting.filter(paid_at__lt=manual_delivery_overdue_cutoff()).count(),
    }
