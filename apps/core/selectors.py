"""Reads for the admin's door (the services beside it write)."""

from django.contrib.auth.base_user import AbstractBaseUser
from django_otp.plugins.otp_totp.models import TOTPDevice


def staff_totp_device(*, user: AbstractBaseUser) -> TOTPDevice | None:
    """The staff member's authenticator. enrol_admin keeps one per account, so
    the login form needs no device picker."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
