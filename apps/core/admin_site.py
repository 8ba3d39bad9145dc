"""The admin's door: the second factor (django-otp TOTP) when
ADMIN_REQUIRE_OTP is on, as production settings always have it, and the
page django-axes answers with once a client address is locked out."""

from axes.helpers import get_cool_off
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_otp.admin import OTPAdminAuthenticationForm

from .selectors import shop_settings_get, staff_totp_device


class StaffLoginForm(OTPAdminAuthenticationForm):
    """Username, password and the current code of the staff member's
    authenticator, in one step."""

    otp_token = forms.CharField(
        label=_("Authenticator code"),
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "maxlength": 8}),
    )
    otp_error_messages = {
        **OTPAdminAuthenticationForm.otp_error_messages,
        "token_required": _("Enter the code your authenticator app shows for this account."),
        "invalid_token": _("That code is not right. Enter the code your authenticator app shows now."),
        "no_device": _(
            "This account has no authenticator yet, so it cannot sign in to the admin. "
            "An operator enrols one with “manage.py enrol_admin --username <name>”."
        ),
    }

    def clean_otp(self, user):
        if user is not None and staff_totp_device(user=user) is None:
            raise forms.ValidationError(self.otp_error_messages["no_device"], code="no_device")
        super().clean_otp(user)

    def _chosen_device(self, user):
        # The account's own authenticator, whatever device id the form was sent.
        return staff_totp_device(user=user)


class ShopAdminSite(admin.AdminSite):
    """admin.site. With ADMIN_REQUIRE_OTP a staff session opens the admin only
    once it has passed the second factor; the setting is read per request, so
    tests can turn it on and off."""

    @property
    def login_form(self):
        return StaffLoginForm if settings.ADMIN_REQUIRE_OTP else None

    def each_context(self, request: HttpRequest) -> dict:
        # The merchant's shop name (ShopSettings) heads the admin, not "Django administration".
        context = super().each_context(request)
        name = shop_settings_get().name
        context["site_header"] = context["site_title"] = name
        return context

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        return not settings.ADMIN_REQUIRE_OTP or request.user.is_verified()


def admin_lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer (AXES_LOCKOUT_CALLABLE) to a login from a locked-out
    address: the admin login page again, saying why and how it ends."""
    cool_off = get_cool_off(request)
    if cool_off:
        minutes = max(1, round(cool_off.total_seconds() / 60))
        message = ngettext(
            "Too many failed sign-in attempts from your address: signing in is locked for %(minutes)d minute. "
            "An operator can unlock it sooner with “manage.py axes_reset”.",
            "Too many failed sign-in attempts from your address: signing in is locked for %(minutes)d minutes. "
            "An operator can unlock it sooner with “manage.py axes_reset”.",
            minutes,
        ) % {"minutes": minutes}
    else:
        message = _(
            "Too many failed sign-in attempts from your address: signing in is locked "
            "until an operator unlocks it with “manage.py axes_reset”."
        )
    site = admin.site
    form_class = site.login_form or AdminAuthenticationForm
    context = {
        **site.each_context(request),
        "title": _("Log in"),
        "subtitle": None,
        "app_path": request.get_full_path(),
        "username": request.user.get_username(),
        "next": request.POST.get("next") or request.GET.get("next", ""),
        "form": form_class(request),
        "lockout_message": message,
    }
    return render(request, "admin/login.html", context, status=429)
