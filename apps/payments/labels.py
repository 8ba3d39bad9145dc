"""What buyers read for each payment method."""

from django.utils.translation import gettext_lazy as _

METHOD_LABELS = {
    "sandbox": _("Test payment (sandbox)"),
    "epay.alipay": _("Alipay"),
    "epay.wxpay": _("WeChat Pay"),
    "epay.qqpay": _("QQ Wallet"),
    "alipay": _("Alipay"),
    "wechatpay": _("WeChat Pay"),
    "stripe": _("Card (Stripe)"),
}


def payment_method_label(method: str) -> str:
    return str(METHOD_LABELS.get(method, method))
