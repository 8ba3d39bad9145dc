from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CardkeysConfig(AppConfig):
    name = "apps.cardkeys"
    label = "cardkeys"
    verbose_name = _("Card keys")
