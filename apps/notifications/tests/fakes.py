"""Local fakes of what notifications call: a merchant's webhook receiver and
the Telegram Bot API (its sendMessage method, answered as the real API does:
{"ok": true, "result": Message}, or {"ok": false, "error_code", "description"})."""

import json
import threading
from http.server import BaseHTTPRequestHandler

from apps.payments.tests.fake_server import FakeProviderServer, reply


class FakeWebhookReceiver(FakeProviderServer):
    """Records every request (headers and raw body); answers each with the
    next status of `statuses`, then 200."""

    def __init__(self, statuses: list[int] | None = None):
        super().__init__()
        self.statuses = list(statuses or [])
        self.requests: list[dict] = []
        self._lock = threading.Lock()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        with self._lock:
            self.requests.append({"path": handler.path, "headers": dict(handler.headers), "body": body})
            status = self.statuses.pop(0) if self.statuses else 200
        reply(handler, status, b'{"received": true}', {"Content-Type": "application/json"})


class FakeTelegramBotApi(FakeProviderServer):
    """The Bot API at /bot<token>/<method>: JSON or form bodies, a wrong token
    gets 401 Unauthorized, a missing chat_id or text 400, as the real one."""

    def __init__(self, token: str, *, flood_answers: int = 0, retry_after: int = 7):
        """The first `flood_answers` sendMessage calls get the API's flood
        control answer (429 with parameters.retry_after)."""
        super().__init__()
        self.token = token
        self.flood_answers = flood_answers
        self.retry_after = retry_after
        self.messages: list[dict] = []
        self._next_id = 1
        self._lock = threading.Lock()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        prefix, _, method = path.rpartition("/")
        if prefix != f"/bot{self.token}":
            return self._answer(handler, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        if method != "sendMessage":
            return self._answer(handler, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        try:
            params = json.loads(raw) if "json" in (handler.headers.get("Content-Type") or "") else {}
        except ValueError:
            params = {}
        if not params.get("chat_id"):
            return self._answer(
                handler, 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"}
            )
        if not params.get("text"):
            return self._answer(
                handler, 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
            )
        with self._lock:
            flooded = self.flood_answers > 0
            self.flood_answers -= 1
        if flooded:
            return self._answer(
                handler,
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {self.retry_after}",
                    "parameters": {"retry_after": self.retry_after},
                },
            )
        with self._lock:
            message_id, self._next_id = self._next_id, self._next_id + 1
            self.messages.append(params)
        chat_id = params["chat_id"]
        result = {
            "message_id": message_id,
            "from": {"id": 1, "is_bot": True, "first_name": "cardshop", "username": "cardshop_bot"},
            "chat": {"id": int(chat_id) if str(chat_id).lstrip("-").isdigit() else chat_id, "type": "private"},
            "date": 0,
            "text": params["text"],
        }
        self._answer(handler, 200, {"ok": True, "result": result})

    @staticmethod
    def _answer(handler, status: int, body: dict) -> None:
        reply(handler, status, json.dumps(body).encode(), {"Content-Type": "application/json"})
