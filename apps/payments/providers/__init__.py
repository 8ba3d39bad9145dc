"""The registry of payment providers, by the name used in webhook URLs."""

from django.conf import settings

from ..exceptions import UnknownProvider
from .alipay import AlipayProvider
from .base import PaymentNotification, PaymentProvider
from .epay import EpayProvider
from .sandbox import SandboxProvider
from .stripe_checkout import StripeProvider
from .wechatpay import WechatPayProvider

_PROVIDERS: dict[str, type[PaymentProvider]] = {
    SandboxProvider.name: SandboxProvider,
    StripeProvider.name: StripeProvider,
    EpayProvider.name: EpayProvider,
    AlipayProvider.name: AlipayProvider,
    WechatPayProvider.name: WechatPayProvider,
}

__all__ = ["PaymentNotification", "PaymentProvider", "provider_get", "provider_names"]


def provider_names() -> list[str]:
    """Every provider this code knows, enabled or not."""
    return list(_PROVIDERS)


def provider_get(*, name: str) -> PaymentProvider:
    """The enabled provider with this name. Raises UnknownProvider."""
    if name not in settings.PAYMENT_PROVIDERS or name not in _PROVIDERS:
        raise UnknownProvider()
    return _PROVIDERS[name]()
