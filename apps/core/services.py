"""Writes for the admin's door: staff accounts and their authenticators
(manage.py enrol_admin), each returning what the operator must see once; and
the shop settings' logo."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.core.errors import AuthenticatorAlreadyEnrolled

from .images import LOGO, image_rendition
from .models import ShopSettings

DEVICE_NAME = "authenticator"


@transaction.atomic(durable=True)
def staff_superuser_ensure(*, username: str, email: str = "") -> tuple[AbstractBaseUser, str | None]:
    """The account `username` as an active superuser, created if missing.
    Returns the account and, for a new one only, its random password (an
    existing account keeps its own)."""
    user_model = get_user_model()
    user = user_model.objects.select_for_update().filter(**{user_model.USERNAME_FIELD: username}).first()
    password = None
    if user is None:
        password = secrets.token_urlsafe(16)
        user = user_model.objects.create_user(username, email=email, password=password)
    elif email:
        user.email = email
    user.is_staff = user.is_superuser = user.is_active = True
    user.save()
    return user, password


@transaction.atomic(durable=True)
def staff_totp_enrol(*, user: AbstractBaseUser) -> TOTPDevice:
    """A new authenticator for a staff member who has none.
    Raises AuthenticatorAlreadyEnrolled if they have one."""
    _lock_account(user)
    if TOTPDevice.objects.filter(user=user).exists():
        raise AuthenticatorAlreadyEnrolled()
    return TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=True)


@transaction.atomic(durable=True)
def staff_totp_replace(*, user: AbstractBaseUser) -> TOTPDevice:
    """A new authenticator in place of the staff member's old one (lost phone,
    leaked secret): codes of the old one stop working, and sessions it verified
    lose the admin."""
    _lock_account(user)
    TOTPDevice.objects.filter(user=user).delete()
    return TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=True)


def _lock_account(user: AbstractBaseUser) -> None:
    # Two enrolments of one account at once would both find no device.
    type(user).objects.select_for_update().only("pk").get(pk=user.pk)


def shop_logo_rendition_make(*, row: ShopSettings) -> ShopSettings:
    """The header-size copy of the shop logo, made (or cleared) after the
    merchant saved a new one. Runs inside the caller's transaction (the admin's
    save); the cached settings are dropped on commit (signals.py)."""
    if row.logo:
        row.logo_small.save("logo.webp", image_rendition(row.logo, size=LOGO), save=False)
    else:
        row.logo_small = ""
    row.save(update_fields=["logo_small", "updated_at"])
    return row
