"""Enrol a staff member's authenticator (TOTP) for the admin's second factor:
the first admin of a new deployment, or a replacement after a lost phone.

The secret is printed once, as an otpauth:// URI and a QR code for the
terminal; a second run refuses rather than show it again (--reset makes a new
one, and the old one stops working).
"""

import io
from base64 import b32encode

import segno
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.core.errors import AuthenticatorAlreadyEnrolled
from apps.core.management.base import ShopCommand
from apps.core.services import staff_superuser_ensure, staff_totp_enrol, staff_totp_replace


class Command(ShopCommand):
    help = gettext_lazy(
        "Enrol a staff member's authenticator app for the admin (prints its secret once, with a QR code)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True, help=gettext_lazy("the staff account"))
        parser.add_argument(
            "--create-superuser",
            action="store_true",
            help=gettext_lazy(
                "create the account if missing (its random password is printed) and make it an active superuser"
            ),
        )
        parser.add_argument("--email", default="", help=gettext_lazy("the account's email, with --create-superuser"))
        parser.add_argument(
            "--reset",
            action="store_true",
            help=gettext_lazy("replace the account's authenticator: a new secret, and the old one stops working"),
        )

    def handle(self, *args, username, create_superuser, email, reset, **options):
        password = None
        if create_superuser:
            user, password = staff_superuser_ensure(username=username, email=email)
        else:
            user = self._staff(username)
        try:
            device = staff_totp_replace(user=user) if reset else staff_totp_enrol(user=user)
        except AuthenticatorAlreadyEnrolled:
            raise CommandError(
                _(
                    "%(username)s has an authenticator already; its secret was shown once and is not shown again. "
                    "Run with --reset to replace it (the old one stops working)."
                )
                % {"username": username}
            ) from None

        uri = device.config_url
        qr = io.StringIO()
        segno.make(uri, error="m").terminal(out=qr, compact=True, border=2)
        self.stdout.write(self.style.SUCCESS(_("Authenticator enrolled for %(username)s.") % {"username": username}))
        if password:
            self.stdout.write(_("  Username:    %(username)s") % {"username": username})
            self.stdout.write(_("  Password:    %(password)s") % {"password": password})
        self.stdout.write(_("  Scan this QR code with an authenticator app (or enter the secret by hand):"))
        self.stdout.write(qr.getvalue(), ending="")
        self.stdout.write(_("  Secret:      %(secret)s") % {"secret": b32encode(device.bin_key).decode()})
        self.stdout.write(_("  URI:         %(uri)s") % {"uri": uri})
        self.stdout.write(
            _("Shown once: keep it only in the authenticator app. The admin login asks for its 6-digit code.")
        )

    def _staff(self, username: str):
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(
                _("There is no account %(username)s: pass --create-superuser to create it.") % {"username": username}
            )
        if not (user.is_staff and user.is_active):
            raise CommandError(
                _("%(username)s is not staff (or not active): pass --create-superuser to make it an active superuser.")
                % {"username": username}
            )
        return user
