from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


class KeyUploadForm(forms.Form):
    """A merchant's keys: pasted text or a .txt/.csv file, one key a line."""

    keys = forms.CharField(
        label=_("Paste keys"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "spellcheck": "false"}),
        help_text=_("One key a line. Blank lines are skipped; duplicates are skipped and counted."),
    )
    file = forms.FileField(
        label=_("Or upload a file"),
        required=False,
        help_text=_(".txt (one key a line) or .csv, saved as UTF-8."),
    )
    column = forms.CharField(
        label=_("CSV column"),
        required=False,
        max_length=100,
        help_text=_(
            "Header of the column holding the keys. Leave empty to use a column named key, code, secret "
            "or 卡密, else the first column."
        ),
    )

    def clean(self):
        cleaned = super().clean()
        has_text = bool((cleaned.get("keys") or "").strip())
        if has_text == bool(cleaned.get("file")):
            raise ValidationError(_("Paste keys or choose a file (one of the two)."))
        return cleaned
