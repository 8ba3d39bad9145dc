"""The access log for a web server whose own log would print tokens: one line
a request, as gunicorn.conf.py's access_log_format writes it under gunicorn.

Granian's access log has the path but no response headers, so no request id
when the app made one up; and a format holding its query string would print
order tokens (`?token=`). scripts/granian_serve.py therefore turns Granian's
own access log off and serves `cardshop.wsgi:application_access_logged`,
which writes this line through the app's logging: the path without its query
string, no referrer, the request id the app answered, and the formatter's
scrubbing (apps.core.logging.redact) as a second line of defence.
"""

import logging
import time

from apps.core.logging import REQUEST_ID_HEADER, request_id_reset, request_id_set

logger = logging.getLogger("cardshop.access")
_REQUEST_ID_HEADER = REQUEST_ID_HEADER.lower()


class AccessLogMiddleware:
    """WSGI middleware: logs when the server closes the response, so the time
    and size cover the whole body."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        answered = {"status": "-", "request_id": "-"}

        def start_response_noted(status, headers, exc_info=None):
            answered["status"] = status.split(" ", 1)[0]
            for name, value in headers:
                if name.lower() == _REQUEST_ID_HEADER:
                    answered["request_id"] = value
            return start_response(status, headers, exc_info)

        body = self.app(environ, start_response_noted)
        return _LoggedBody(body, environ=environ, answered=answered, started=started)


class _LoggedBody:
    def __init__(self, body, *, environ: dict, answered: dict, started: float):
        self.body = body
        self.environ = environ
        self.answered = answered
        self.started = started
        self.sent = 0

    def __iter__(self):
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self._log()

    def _log(self) -> None:
        environ, answered = self.environ, self.answered
        milliseconds = round((time.perf_counter() - self.started) * 1000)
        # The line carries the request id field like the app's other lines.
        token = request_id_set(answered["request_id"] if answered["request_id"] != "-" else None)
        try:
            logger.info(
                '%s "%s %s %s" %s %s %sms request_id=%s',
                environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD", "-"),
                # PATH_INFO never holds the query string (the tokens travel there).
                environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
                environ.get("SERVER_PROTOCOL", "-"),
                answered["status"],
                self.sent,
                milliseconds,
                answered["request_id"],
            )
        finally:
            request_id_reset(token)
