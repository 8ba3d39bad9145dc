"""The admin's door: a lockout after repeated wrong passwords (django-axes,
counted per client address as apps.core.client_ip computes it), and a TOTP
second factor (django-otp) wherever ADMIN_REQUIRE_OTP is on, as production
settings always have it (tests/test_production_settings.py checks that)."""

import io
import json
import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.orders.tests.support import product_with_keys
from tests.test_production_settings import REAL, SECRET_VARS

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "pw-admin-right-1"


@pytest.fixture
def staff(db):
    return User.objects.create_user("boss", password=PASSWORD, is_staff=True, is_superuser=True)


@pytest.fixture
def otp_required(settings):
    settings.ADMIN_REQUIRE_OTP = True


def log_in(client, *, password=PASSWORD, token=None, language="en", **headers):
    data = {"username": "boss", "password": password, "next": "/admin/"}
    if token is not None:
        data["otp_token"] = token
    return client.post(LOGIN, data, HTTP_ACCEPT_LANGUAGE=language, **headers)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def current_token(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"


# --- Lockout (django-axes)


def test_thirty_wrong_passwords_lock_the_address_until_an_operator_resets_it(client, staff, settings):
    settings.AXES_FAILURE_LIMIT = 5
    answers = [log_in(client, password=f"wrong-{n}") for n in range(30)]
    assert [a.status_code for a in answers[:4]] == [200] * 4  # the login page again, with its error
    locked = answers[4:]
    assert {a.status_code for a in locked} == {429}
    page = locked[-1].content.decode()
    assert 'id="login-form"' in page  # the login page itself, not a bare error
    assert "Too many failed sign-in attempts" in page and "axes_reset" in page

    # The right password does not open it either.
    response = log_in(client)
    assert response.status_code == 429 and not logged_in(response)
    assert client.get("/admin/").status_code == 302

    call_command("axes_reset", verbosity=0)
    assert logged_in(log_in(client))
    assert client.get("/admin/").status_code == 200


def test_the_lockout_message_is_translated(client, staff, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for n in range(2):
        response = log_in(client, password=f"wrong-{n}", language="zh-hans")
    assert response.status_code == 429
    page = response.content.decode()
    assert "登录失败次数过多" in page and "Too many failed" not in page


def test_without_a_cool_off_the_lockout_lasts_until_an_operator_ends_it(client, staff, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = None  # AXES_COOLOFF_MINUTES=0
    for n in range(2):
        response = log_in(client, password=f"wrong-{n}")
    assert response.status_code == 429
    assert "locked until an operator unlocks it" in response.content.decode()
    call_command("axes_reset_ip", "127.0.0.1", stdout=io.StringIO())
    assert logged_in(log_in(client))


def test_the_lockout_counts_the_client_address_the_trusted_proxy_saw(client, staff, settings):
    """Behind nginx every request comes from the proxy's address: the lockout
    must count the client apps.core.client_ip names, or one attacker would
    lock every admin out (and a forged header would let them escape)."""
    settings.AXES_FAILURE_LIMIT = 3
    settings.TRUSTED_PROXY_IP_HEADER = "X-Forwarded-For"
    settings.TRUSTED_PROXY_COUNT = 1
    attacker = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    for n in range(3):
        response = log_in(client, password=f"wrong-{n}", **attacker)
    assert response.status_code == 429
    # What the attacker writes left of the proxy's entry changes nothing.
    forged = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.9"}
    assert log_in(client, **forged).status_code == 429
    # The admin, through the same proxy from another address, still gets in.
    assert logged_in(log_in(client, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.77"))


def test_a_wrong_password_below_the_limit_is_the_usual_error(client, staff):
    response = log_in(client, password="wrong")
    assert response.status_code == 200 and not logged_in(response)
    assert "Too many failed" not in response.content.decode()


# --- Second factor (django-otp TOTP)


def test_without_the_requirement_the_login_page_asks_for_no_token(client, staff, settings):
    settings.ADMIN_REQUIRE_OTP = False
    assert 'name="otp_token"' not in client.get(LOGIN).content.decode()
    assert logged_in(log_in(client))


def test_the_login_page_asks_for_the_token_when_required(client, db, otp_required):
    page = client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'name="otp_token"' in page and 'autocomplete="one-time-code"' in page


def test_staff_without_a_totp_device_cannot_reach_the_admin(client, staff, otp_required):
    response = log_in(client)
    assert not logged_in(response)
    assert "enrol_admin" in response.content.decode()  # says what to do
    # Not even a session made some other way (before the requirement, or by a bug) opens it.
    client.force_login(staff)
    assert client.get("/admin/").status_code == 302
    product = product_with_keys(keys=1)
    assert client.get(f"/admin/sales/{product.id}/").status_code == 302


def test_staff_with_a_valid_token_get_in(client, staff, otp_required):
    device = TOTPDevice.objects.create(user=staff, name="default", confirmed=True)
    response = log_in(client)  # the password alone is not enough
    assert not logged_in(response)
    assert "Enter the code your authenticator app shows" in response.content.decode()
    response = log_in(client, token=current_token(device))
    assert logged_in(response)
    assert client.get("/admin/").status_code == 200


def test_a_wrong_token_is_refused(client, staff, otp_required):
    device = TOTPDevice.objects.create(user=staff, name="default", confirmed=True)
    wrong = "000000" if current_token(device) != "000000" else "111111"
    response = log_in(client, token=wrong)
    assert not logged_in(response) and "That code is not right" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_verified_merchant_reaches_the_sales_dashboard(client, db, otp_required):
    user = User.objects.create_user("boss", password=PASSWORD, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_product"))
    device = TOTPDevice.objects.create(user=user, name="default", confirmed=True)
    assert logged_in(log_in(client, token=current_token(device)))
    product = product_with_keys(keys=1)
    assert client.get(f"/admin/sales/{product.id}/").status_code == 200


def test_another_users_device_does_not_verify(client, staff, otp_required):
    other = User.objects.create_user("other", password="pw-other-1", is_staff=True)
    device = TOTPDevice.objects.create(user=other, name="default", confirmed=True)
    response = client.post(
        LOGIN,
        {
            "username": "boss",
            "password": PASSWORD,
            "otp_device": device.persistent_id,
            "otp_token": current_token(device),
            "next": "/admin/",
        },
    )
    assert not logged_in(response)


def test_the_admin_never_shows_a_totp_secret_again(client, staff, otp_required):
    """enrol_admin shows it once; a staff session (even a superuser's) cannot read it back."""
    device = TOTPDevice.objects.create(user=staff, name="default", confirmed=True)
    assert logged_in(log_in(client, token=current_token(device)))
    base = f"/admin/otp_totp/totpdevice/{device.pk}/"
    assert client.get(base + "config/").status_code == 403
    assert client.get(base + "qrcode/").status_code == 403
    page = client.get(base + "change/").content.decode()
    assert device.key not in page


# --- The same door under cardshop.settings.production itself

PRODUCTION_ADMIN = """
import json
import environ
environ.Env.read_env = classmethod(lambda cls, *args, **kwargs: None)
import django
django.setup()
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

# Hashed here, with production's hasher (the test settings' one is not among them).
for user in User.objects.filter(username__in=["nodevice", "boss"]):
    user.set_password("%(password)s")
    user.save()

def log_in(client, username, **extra):
    data = {"username": username, "password": "%(password)s", "next": "/admin/", **extra}
    response = client.post("/admin/login/?next=/admin/", data, secure=True, HTTP_ACCEPT_LANGUAGE="en")
    if response.status_code == 302 and response["Location"] == "/admin/":
        return "in"
    page = response.content.decode()
    return "no authenticator" if "no authenticator yet" in page else "asked for the code" if "Enter the code" in page else page

answers = {"ADMIN_REQUIRE_OTP": settings.ADMIN_REQUIRE_OTP}
client = Client()
answers["no device: password"] = log_in(client, "nodevice")
client.force_login(User.objects.get(username="nodevice"))
answers["no device: session"] = client.get("/admin/", secure=True).status_code

client = Client()
answers["device: password only"] = log_in(client, "boss")
device = TOTPDevice.objects.get(user__username="boss")
token = "%%0*d" %% (device.digits, totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits))
answers["device: password and code"] = log_in(client, "boss", otp_token=token)
answers["device: admin"] = client.get("/admin/", secure=True).status_code
print(json.dumps(answers))
"""


@pytest.mark.django_db(transaction=True)
def test_under_production_settings_the_admin_wants_the_second_factor(settings):
    """A web process started with cardshop.settings.production (its own
    interpreter, the test database and Redis prefix)."""
    User.objects.create_user("nodevice", password=PASSWORD, is_staff=True, is_superuser=True)
    boss = User.objects.create_user("boss", password=PASSWORD, is_staff=True, is_superuser=True)
    TOTPDevice.objects.create(user=boss, name="default", confirmed=True)

    database = connection.settings_dict
    environment = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    environment.update(
        REAL,
        DJANGO_SETTINGS_MODULE="cardshop.settings.production",
        DATABASE_URL=f"mysql://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        REDIS_KEY_PREFIX=settings.REDIS_KEY_PREFIX,
        ADMIN_REQUIRE_OTP="false",  # production ignores it
    )
    environment.pop("DATABASE_REPLICA_URL", None)  # the replica is the primary here
    result = subprocess.run(
        [sys.executable, "-c", PRODUCTION_ADMIN % {"password": PASSWORD}],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "ADMIN_REQUIRE_OTP": True,
        "no device: password": "no authenticator",
        "no device: session": 302,
        "device: password only": "asked for the code",
        "device: password and code": "in",
        "device: admin": 200,
    }
