from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from apps.cardkeys.crypto import encrypt_secret

from .models import NotificationSettings


class NotificationSettingsForm(forms.ModelForm):
    """The secrets are write-only: a blank field keeps the stored one, and
    what is stored is a Fernet token (CARDKEY_ENCRYPTION_KEYS), never shown."""

    webhook_url = forms.URLField(
        label=capfirst(_("webhook URL")),
        required=False,
        max_length=500,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"class": "vURLField"}),
    )
    webhook_secret = forms.CharField(
        label=capfirst(_("webhook signing secret")),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Signs every webhook request (X-Cardshop-Signature). Leave blank to keep the current one."),
    )
    telegram_bot_token = forms.CharField(
        label=capfirst(_("Telegram bot token")),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("From @BotFather. Leave blank to keep the current one."),
    )

    class Meta:
        model = NotificationSettings
        fields = [
            "notify_paid_orders",
            "notify_low_stock",
            "low_stock_threshold",
            "email_enabled",
            "email_recipients",
            "webhook_enabled",
            "webhook_url",
            "telegram_enabled",
            "telegram_chat_id",
        ]
        widgets = {"email_recipients": forms.Textarea(attrs={"rows": 3, "cols": 60})}

    def clean_email_recipients(self):
        value = self.cleaned_data["email_recipients"]
        for address in value.replace(",", "\n").splitlines():
            if address.strip():
                try:
                    validate_email(address.strip())
                except ValidationError:
                    raise ValidationError(
                        _("“%(address)s” is not an email address."), params={"address": address.strip()}
                    ) from None
        return value

    def clean(self):
        data = super().clean()
        has_secret = bool(data.get("webhook_secret") or self.instance.webhook_secret_encrypted)
        has_token = bool(data.get("telegram_bot_token") or self.instance.telegram_bot_token_encrypted)
        if data.get("email_enabled") and not data.get("email_recipients", "").strip():
            self.add_error("email_recipients", _("Enter at least one address to send email notifications."))
        if data.get("webhook_enabled"):
            if not data.get("webhook_url"):
                self.add_error("webhook_url", _("Enter the URL the webhook posts to."))
            if not has_secret:
                self.add_error("webhook_secret", _("Set a signing secret for the webhook."))
        if data.get("telegram_enabled"):
            if not data.get("telegram_chat_id"):
                self.add_error("telegram_chat_id", _("Enter the chat id the bot writes to."))
            if not has_token:
                self.add_error("telegram_bot_token", _("Set the bot token."))
        return data

    def save(self, commit=True):
        settings_row = super().save(commit=False)
        if self.cleaned_data.get("webhook_secret"):
            settings_row.webhook_secret_encrypted = encrypt_secret(self.cleaned_data["webhook_secret"])
        if self.cleaned_data.get("telegram_bot_token"):
            settings_row.telegram_bot_token_encrypted = encrypt_secret(self.cleaned_data["telegram_bot_token"])
        if commit:
            settings_row.save()
        return settings_row
