"""Structured logs: one JSON object a line, with the request id and, where
there is one, the order number; secrets scrubbed on the way out.

The request id comes from the client's (or the proxy's) X-Request-ID when it
is a sane token, else a new one; it is answered in X-Request-ID, carried into
the Celery tasks the request queues (apps.monitoring.celery_hooks), and put on
every line logged while the request or task runs.

Secrets stay out of logs by not being logged: nothing here logs a request
body, a header or a task's arguments, and the formatter writes only the fields
listed in `_line` (never a record's arbitrary extras). As a second line of
defence every message and traceback is scrubbed of values that look like a
token, signature or password (`redact`).
"""

import contextvars
import json
import logging
import re
import uuid
from datetime import UTC, datetime

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_order_no: contextvars.ContextVar[str | None] = contextvars.ContextVar("order_no", default=None)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# apps.orders.identity.order_number_new: date, product id, 12 Crockford characters.
_ORDER_NO = re.compile(r"\b\d{6}-\d+-[0-9A-HJKMNP-TV-Z]{12}\b")
# name=value, name: value, "name": "value" (also Bearer values) for names that hold a secret.
_SECRET_VALUE = re.compile(
    r"""(?ix)
    (\b(?:[a-z_-]*token|[a-z_-]*signature|authorization|password|passwd|secret|api[_-]?key|sig)
       ["']?\s*[:=]\s*["']?(?:bearer\s+)?)
    [^\s&"',;)]+
    """
)


def request_id_get() -> str | None:
    return _request_id.get()


def request_id_set(value: str | None) -> contextvars.Token:
    """Returns the token that request_id_reset takes to restore the previous id."""
    return _request_id.set(value)


def request_id_reset(token: contextvars.Token) -> None:
    _request_id.reset(token)


def request_id_from(header_value: str | None) -> str:
    if header_value and _REQUEST_ID_OK.match(header_value):
        return header_value
    return uuid.uuid4().hex


def redact(text: str) -> str:
    return _SECRET_VALUE.sub(r"\1[redacted]", text)


class RequestIdMiddleware:
    """First in MIDDLEWARE: every later line of the request carries the id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        id_token = _request_id.set(request_id)
        order_token = _order_no.set(None)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(id_token)
            _order_no.reset(order_token)
        response[REQUEST_ID_HEADER] = request_id
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        # Order pages, status, payment pages: the order is in the address.
        order_no = view_kwargs.get("order_no")
        if isinstance(order_no, str):
            _order_no.set(order_no)
        return None


def _request_id_of(record: logging.LogRecord) -> str | None:
    # django.request logs a refused request after the middleware has returned;
    # it passes the request along, which carries its id.
    return getattr(getattr(record, "request", None), "request_id", None) or _request_id.get()


def _order_no_of(record: logging.LogRecord, message: str) -> str | None:
    explicit = getattr(record, "order_no", None)
    if isinstance(explicit, str):
        return explicit
    if bound := _order_no.get():
        return bound
    # Worker lines name their order in the message ("order %s needs attention").
    found = _ORDER_NO.search(message)
    return found.group(0) if found else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        if request_id := _request_id_of(record):
            line["request_id"] = request_id
        if order_no := _order_no_of(record, message):
            line["order_no"] = order_no
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """For a developer's terminal (LOG_FORMAT=plain): the same fields, one readable line."""

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        context = " ".join(
            f"{name}={value}"
            for name, value in (("request_id", _request_id_of(record)), ("order_no", _order_no_of(record, message)))
            if value
        )
        line = f"{self.formatTime(record)} {record.levelname} {record.name} {message}"
        line = f"{line} [{context}]" if context else line
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line
