"""The product's checkout fields (ProductInputField): what the buyer typed,
checked before anything is reserved (P7), sealed before it reaches Redis
(P5: the values may be account ids), kept sealed on the order, and opened
only for the merchant (the order admin, notifications: order_input_values)."""

import json
import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from apps.cardkeys.crypto import decrypt_secret, encrypt_secret
from apps.catalog.selectors import InputFieldInfo, input_label
from apps.core.errors import InvalidInput

NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def input_values_clean(*, fields: tuple[InputFieldInfo, ...], values) -> list[dict]:
    """The buyer's values for the product's fields, in the fields' order, as
    {key, label_zh, label_en, value} (the labels the buyer saw, kept with the
    order). `values` maps keys to text (the API's `fields` object); keys the
    product does not ask for are ignored. Raises InvalidInput naming each
    refused field as `fields.<key>`."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InvalidInput(fields={"fields": [_("Send the fields as an object of key and text.")]})
    errors: dict[str, list[str]] = {}
    cleaned = []
    for field in fields:
        raw = values.get(field.key)
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = str(raw)
        value = raw.strip() if isinstance(raw, str) else ""
        problem = _problem(field, value, given=raw is None or isinstance(raw, str))
        if problem:
            errors[f"fields.{field.key}"] = [_("%(label)s: %(problem)s") % {"label": field.label, "problem": problem}]
        elif value:
            cleaned.append({"key": field.key, "label_zh": field.label_zh, "label_en": field.label_en, "value": value})
    if errors:
        raise InvalidInput(fields=errors)
    return cleaned


def _problem(field: InputFieldInfo, value: str, *, given: bool) -> str:
    if not given:
        return _("enter text.")
    if not value:
        return _("this field is required.") if field.required else ""
    if len(value) > field.max_length:
        return _("at most %(n)d characters.") % {"n": field.max_length}
    if field.kind == "number" and not NUMBER.fullmatch(value):
        return _("enter a number.")
    if field.kind == "email":
        try:
            validate_email(value)
        except ValidationError:
            return _("enter a valid email address.")
    if field.kind == "select" and value not in field.choices:
        return _("choose one of the options.")
    if field.pattern and not re.fullmatch(field.pattern, value):
        return _("the format is not valid.")
    return ""


def input_values_seal(values: list[dict]) -> str:
    """Encrypted (apps/cardkeys/crypto.py) for Redis and the order row; "" for none."""
    return encrypt_secret(json.dumps(values, ensure_ascii=False)) if values else ""


def input_values_open(sealed: str) -> list[dict]:
    return json.loads(decrypt_secret(sealed)) if sealed else []


def order_input_entries(order) -> list[tuple[str, str, str]]:
    """(key, label, value) of what the buyer typed at checkout, labels in the
    active language: the one way the admin and notifications read them."""
    return [
        (item["key"], input_label(label_zh=item["label_zh"], label_en=item["label_en"]), item["value"])
        for item in input_values_open(order.input_values)
    ]


def order_input_values(order) -> list[tuple[str, str]]:
    """(label, value) of what the buyer typed, as the admin shows them."""
    return [(label, value) for _key, label, value in order_input_entries(order)]
