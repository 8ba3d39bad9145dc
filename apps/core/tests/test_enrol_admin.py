"""manage.py enrol_admin: the first admin's TOTP device, shown once."""

import base64
import io
import re
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice


def enrol(*args) -> str:
    out = io.StringIO()
    call_command("enrol_admin", "--lang", "en", *args, stdout=out)
    return out.getvalue()


def otpauth_uri(output: str) -> str:
    return re.search(r"otpauth://\S+", output).group(0)


def token_from(uri: str) -> str:
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return f"{TOTP(key).token():06d}"


@pytest.mark.django_db
def test_creates_the_superuser_and_prints_the_uri_and_a_qr_code_once(settings):
    settings.ADMIN_REQUIRE_OTP = True
    output = enrol("--username", "chief", "--email", "chief@example.com", "--create-superuser")

    user = User.objects.get(username="chief")
    assert user.is_staff and user.is_superuser and user.is_active and user.email == "chief@example.com"
    password = re.search(r"Password:\s+(\S+)", output).group(1)
    assert user.check_password(password)

    uri = otpauth_uri(output)
    assert uri.startswith("otpauth://totp/") and "chief" in unquote(uri)
    assert parse_qs(urlparse(uri).query)["issuer"] == [settings.OTP_TOTP_ISSUER]
    # A QR code drawn with block characters, several lines tall.
    assert sum(1 for line in output.splitlines() if "█" in line or "▀" in line or "▄" in line) >= 10
    device = TOTPDevice.objects.get(user=user)
    assert device.confirmed and device.verify_token(token_from(uri))

    # Shown once: a second run refuses and prints no secret.
    with pytest.raises(CommandError, match="--reset"):
        enrol("--username", "chief")
    assert TOTPDevice.objects.filter(user=user).count() == 1


@pytest.mark.django_db
def test_reset_replaces_the_device_and_the_old_secret_stops_working():
    user = User.objects.create_user("chief", password="pw-chief-1", is_staff=True)
    first = otpauth_uri(enrol("--username", "chief"))
    old_device = TOTPDevice.objects.get(user=user)

    second = otpauth_uri(enrol("--username", "chief", "--reset"))
    assert second != first
    assert not TOTPDevice.objects.filter(pk=old_device.pk).exists()
    device = TOTPDevice.objects.get(user=user)
    assert device.verify_token(token_from(second))
    user.refresh_from_db()
    assert user.check_password("pw-chief-1")  # an existing account keeps its password


@pytest.mark.django_db
def test_refuses_an_unknown_user_unless_asked_to_create_one():
    with pytest.raises(CommandError, match="--create-superuser"):
        enrol("--username", "nobody")
    assert not User.objects.filter(username="nobody").exists()


@pytest.mark.django_db
def test_refuses_an_account_that_is_not_staff_unless_asked_to_make_it_a_superuser():
    User.objects.create_user("buyer", password="pw-buyer-1")
    with pytest.raises(CommandError, match="not staff"):
        enrol("--username", "buyer")
    assert not TOTPDevice.objects.exists()
    enrol("--username", "buyer", "--create-superuser")
    user = User.objects.get(username="buyer")
    assert user.is_staff and user.is_superuser and user.check_password("pw-buyer-1")
