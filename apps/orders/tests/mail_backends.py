"""Mail backends for the delivery-mail tests: a mail server takes time to
accept a message (its DATA, then "250"), and a mail that went out twice must
be countable across processes."""

import os
import time
import uuid
from pathlib import Path

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend

ACCEPT_SECONDS = 0.05


class SlowLocmemBackend(LocmemBackend):
    """django.core.mail.outbox, each message accepted ACCEPT_SECONDS after it was handed over."""

    def send_messages(self, messages):
        time.sleep(ACCEPT_SECONDS)
        return super().send_messages(messages)


class SlowDirectoryBackend(BaseEmailBackend):
    """Each message accepted TEST_MAIL_DELAY seconds after it was handed over,
    then stored as one file in TEST_MAIL_DIR, shared by every process: a file
    appears whole (written aside, then renamed) the moment it is accepted, as
    an SMTP server answers "250" only for a whole message."""

    def send_messages(self, messages):
        directory = Path(os.environ["TEST_MAIL_DIR"])
        delay = float(os.environ.get("TEST_MAIL_DELAY", ACCEPT_SECONDS))
        for message in messages:
            time.sleep(delay)
            name = uuid.uuid4().hex
            aside = directory / f".{name}.part"
            aside.write_bytes(message.message().as_bytes())
            os.replace(aside, directory / f"{name}.eml")
        return len(messages)
