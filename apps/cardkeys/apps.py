from django.apps import AppConfig


class CardkeysConfig(AppConfig):
    name = "apps.cardkeys"
    label = "cardkeys"
