import uuid

import MySQLdb
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings


def server_connection():
    database = settings.DATABASES["default"]
    return MySQLdb.connect(
        host=database["HOST"], port=int(database["PORT"] or 3306), user=database["USER"], password=database["PASSWORD"]
    )


def schema_charset(name: str):
    with server_connection() as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT default_character_set_name FROM information_schema.schemata WHERE schema_name = %s", [name]
        )
        row = cursor.fetchone()
    return row[0] if row else None


@pytest.fixture
def fresh_database_name():
    name = f"cardshop_createdb_{uuid.uuid4().hex[:10]}"
    yield name
    with server_connection() as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


# The command reads DATABASES only to find the server; no connection of the
# test run is reopened under the overridden settings.
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_creates_the_database_once_and_is_safe_to_repeat(fresh_database_name, capsys):
    databases = {**settings.DATABASES, "default": {**settings.DATABASES["default"], "NAME": fresh_database_name}}
    assert schema_charset(fresh_database_name) is None
    with override_settings(DATABASES=databases):
        call_command("create_database", "--lang", "en")
        call_command("create_database", "--lang", "en")
    assert schema_charset(fresh_database_name) == "utf8mb4"
    assert f"Database {fresh_database_name} is ready." in capsys.readouterr().out
