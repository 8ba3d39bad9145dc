"""cardshop.settings.production refuses to start without real secrets.

Each case imports the settings in a fresh interpreter, as a web or worker
process would, with exactly the environment given (a developer's .env file is
not read, so the result does not depend on the machine).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
SECRET_VARS = ("DJANGO_SECRET_KEY", "CARDKEY_ENCRYPTION_KEYS", "CARDKEY_FINGERPRINT_KEY")

LOAD_SETTINGS = """
import environ
environ.Env.read_env = classmethod(lambda cls, *args, **kwargs: None)
from django.conf import settings
print("DEBUG=%s KEYS=%d" % (settings.DEBUG, len(settings.CARDKEY_ENCRYPTION_KEYS)))
"""

REAL = {
    "DJANGO_SECRET_KEY": "k" * 20 + "-real-secret-for-tests-0123456789",
    "CARDKEY_ENCRYPTION_KEYS": Fernet.generate_key().decode() + "," + Fernet.generate_key().decode(),
    "CARDKEY_FINGERPRINT_KEY": "f" * 40,
    # The demo's only provider is the sandbox; a real shop would list its own.
    "ALLOW_SANDBOX_PAYMENTS": "true",
    "SANDBOX_PAYMENT_SECRET": "s" * 40,
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    # Behind nginx, as deploy/ and the compose file run it.
    "TRUSTED_PROXY_IP_HEADER": "X-Forwarded-For",
}


def load_production_settings(**variables) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    environment["DJANGO_SETTINGS_MODULE"] = "cardshop.settings.production"
    environment.update(variables)
    return subprocess.run(
        [sys.executable, "-c", LOAD_SETTINGS],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode != 0, result.stdout
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: "), result.stderr
    assert message in last_line


def test_starts_with_real_values():
    result = load_production_settings(**REAL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DEBUG=False KEYS=2"


@pytest.mark.parametrize("missing", SECRET_VARS)
def test_refuses_to_start_when_a_secret_is_missing(missing):
    variables = {k: v for k, v in REAL.items() if k != missing}
    assert_refused(load_production_settings(**variables), f"{missing} is not set")


@pytest.mark.parametrize("empty", SECRET_VARS)
def test_refuses_an_empty_secret(empty):
    assert_refused(load_production_settings(**{**REAL, empty: " "}), f"{empty} is not set")


def test_refuses_the_development_secret_key():
    from cardshop.settings.base import INSECURE_DEV_SECRET_KEY

    result = load_production_settings(**{**REAL, "DJANGO_SECRET_KEY": INSECURE_DEV_SECRET_KEY})
    assert_refused(result, "DJANGO_SECRET_KEY must be a real secret")


def test_refuses_the_development_encryption_key_even_beside_a_real_one():
    from cardshop.settings.base import INSECURE_DEV_ENCRYPTION_KEY

    keys = Fernet.generate_key().decode() + "," + INSECURE_DEV_ENCRYPTION_KEY
    result = load_production_settings(**{**REAL, "CARDKEY_ENCRYPTION_KEYS": keys})
    assert_refused(result, "not the development key")


def test_refuses_an_invalid_fernet_key_without_echoing_it():
    keys = Fernet.generate_key().decode() + ",not-a-fernet-key-but-a-typo"
    result = load_production_settings(**{**REAL, "CARDKEY_ENCRYPTION_KEYS": keys})
    assert_refused(result, "key #2 is not a valid Fernet key")
    assert "not-a-fernet-key-but-a-typo" not in result.stderr


def test_refuses_the_development_fingerprint_key():
    from cardshop.settings.base import INSECURE_DEV_FINGERPRINT_KEY

    result = load_production_settings(**{**REAL, "CARDKEY_FINGERPRINT_KEY": INSECURE_DEV_FINGERPRINT_KEY})
    assert_refused(result, "CARDKEY_FINGERPRINT_KEY must be a real secret")


def test_refuses_a_short_order_token_key_but_takes_none_or_a_real_one():
    assert_refused(load_production_settings(**{**REAL, "ORDER_TOKEN_KEY": "short"}), "ORDER_TOKEN_KEY must be")
    assert load_production_settings(**{**REAL, "ORDER_TOKEN_KEY": "k" * 40}).returncode == 0


def test_refuses_the_sandbox_provider_unless_explicitly_allowed():
    result = load_production_settings(**{**REAL, "ALLOW_SANDBOX_PAYMENTS": "false"})
    assert_refused(result, "pays without money")


def test_refuses_the_development_sandbox_secret():
    result = load_production_settings(**{**REAL, "SANDBOX_PAYMENT_SECRET": "dev-only-sandbox-payment-secret"})
    assert_refused(result, "SANDBOX_PAYMENT_SECRET")


def test_refuses_a_mail_backend_that_prints_keys():
    result = load_production_settings(**{**REAL, "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"})
    assert_refused(result, "plaintext keys")


# --- HTTPS, HSTS and the admin's second factor


def run_under_production_settings(script: str, **variables) -> subprocess.CompletedProcess:
    """`script` in a fresh interpreter with production settings and exactly these variables."""
    environment = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    environment["DJANGO_SETTINGS_MODULE"] = "cardshop.settings.production"
    environment.update(variables)
    prologue = "import environ\nenviron.Env.read_env = classmethod(lambda cls, *args, **kwargs: None)\n"
    return subprocess.run(
        [sys.executable, "-c", prologue + script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


CHECK_DEPLOY = """
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "check", "--deploy", "--fail-level", "WARNING"])
"""


def test_check_deploy_reports_nothing():
    result = run_under_production_settings(CHECK_DEPLOY, **REAL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout + result.stderr


def test_check_deploy_warns_when_the_https_redirect_is_turned_off():
    """The compose demo over plain HTTP turns it off; check --deploy says what that costs."""
    result = run_under_production_settings(CHECK_DEPLOY, **{**REAL, "SECURE_SSL_REDIRECT": "false"})
    assert result.returncode != 0 and "security.W008" in result.stdout + result.stderr


def test_check_deploy_warns_when_no_proxy_header_is_trusted():
    """Behind a proxy without it every buyer would share the proxy's address
    (the unpaid cap, rate limits, the admin lockout); a direct deployment silences it."""
    result = run_under_production_settings(CHECK_DEPLOY, **{**REAL, "TRUSTED_PROXY_IP_HEADER": ""})
    assert result.returncode != 0 and "cardshop.W001" in result.stdout + result.stderr
    silenced = {**REAL, "TRUSTED_PROXY_IP_HEADER": "", "SILENCED_SYSTEM_CHECKS": "cardshop.W001"}
    result = run_under_production_settings(CHECK_DEPLOY, **silenced)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_admin_always_wants_a_second_factor_in_production():
    script = "from django.conf import settings\nprint(settings.ADMIN_REQUIRE_OTP)"
    for value in ("", "false"):
        result = run_under_production_settings(script, **{**REAL, "ADMIN_REQUIRE_OTP": value})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "True"


HTTPS_ANSWERS = """
import json
import django
django.setup()
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from django.test import RequestFactory

middleware = SecurityMiddleware(lambda request: HttpResponse("app"))
answers = {}
for path in ("/admin/", "/", "/healthz", "/readyz", "/metrics"):
    for proto in ("", "https"):
        meta = {"HTTP_X_FORWARDED_PROTO": proto} if proto else {}
        response = middleware(RequestFactory().get(path, **meta))
        answers[f"{path} {proto or 'http'}"] = [
            response.status_code,
            response.get("Location", ""),
            response.get("Strict-Transport-Security", ""),
        ]
print(json.dumps(answers))
"""


def https_answers(**variables) -> dict:
    result = run_under_production_settings(HTTPS_ANSWERS, **{**REAL, **variables})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_plain_http_is_redirected_except_the_probes_and_https_gets_hsts_behind_the_proxy():
    answers = https_answers(TRUSTED_PROXY_IP_HEADER="X-Forwarded-For")
    assert answers["/admin/ http"] == [301, "https://testserver/admin/", ""]
    assert answers["/ http"][:2] == [301, "https://testserver/"]
    # Probes and Prometheus speak plain HTTP to the process itself.
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert answers[f"{probe} http"] == [200, "", ""], probe
    # Our proxy says the client's request came over HTTPS: served, with HSTS.
    assert answers["/admin/ https"] == [200, "", "max-age=31536000; includeSubDomains; preload"]


def test_the_forwarded_protocol_is_believed_only_behind_the_trusted_proxy():
    """Reached directly, a client could claim HTTPS with a header of its own."""
    answers = https_answers(TRUSTED_PROXY_IP_HEADER="")
    assert answers["/admin/ https"][:2] == [301, "https://testserver/admin/"]


def test_the_plain_http_demo_turns_the_redirect_off_and_hsts_is_configurable():
    answers = https_answers(
        TRUSTED_PROXY_IP_HEADER="X-Forwarded-For",
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="3600",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
        SECURE_HSTS_PRELOAD="false",
    )
    assert answers["/admin/ http"] == [200, "", ""]
    assert answers["/admin/ https"] == [200, "", "max-age=3600"]


def test_the_compose_demo_over_plain_http_turns_the_redirect_off():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert 'SECURE_SSL_REDIRECT: "false"' in compose
