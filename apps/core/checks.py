"""System checks `manage.py check --deploy` runs for a production deployment."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def client_address_check(app_configs, **kwargs):
    """Behind nginx or a load balancer without TRUSTED_PROXY_IP_HEADER, every
    buyer counts as the proxy's address: the whole shop would share one
    unpaid cap per product, one rate-limit budget and one admin lockout."""
    if settings.TRUSTED_PROXY_IP_HEADER:
        return []
    return [
        Warning(
            "TRUSTED_PROXY_IP_HEADER is not set, so every client counts as the address it connects from.",
            hint=(
                "Behind nginx or a load balancer set TRUSTED_PROXY_IP_HEADER=X-Forwarded-For (and "
                "TRUSTED_PROXY_COUNT), or every buyer shares the proxy's address: UNPAID_CAP_PER_IP, the "
                "rate limits and the admin lockout would count them all as one. If gunicorn faces buyers "
                "directly, silence this with SILENCED_SYSTEM_CHECKS=cardshop.W001."
            ),
            id="cardshop.W001",
        )
    ]
