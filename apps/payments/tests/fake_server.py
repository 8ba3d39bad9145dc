"""What the local payment-provider fakes (fake_epay.py, fake_alipay.py,
fake_wechatpay.py, fake_stripe.py) share: an HTTP server on 127.0.0.1 served
from a daemon thread, the notifications a fake sends from threads of its own,
and one way to call the shop over HTTP.

A fake is used as `with FakeEpay() as fake: ...` in a fixture, or with
start()/stop() where its life spans more than one block (a helper object's
setup and teardown)."""

import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qsl, urlsplit

# Ignores http_proxy/https_proxy from the environment: the fakes and the shop
# they call are on 127.0.0.1, and a proxy in a developer's shell would
# otherwise stand between them.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# How long stop() waits for each notification still being sent.
SENDER_JOIN_SECONDS = 30


def http_exchange(request: urllib.request.Request | str, *, timeout: float) -> tuple[int, bytes]:
    """Send `request` (or GET a URL) without a proxy; (status, body), an HTTP
    error status being an answer like any other."""
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def query_and_form(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    """A request's parameters: the query string's, and a POSTed form's over them."""
    params = dict(parse_qsl(urlsplit(handler.path).query, keep_blank_values=True))
    if handler.command == "POST":
        length = int(handler.headers.get("Content-Length") or 0)
        params.update(parse_qsl(handler.rfile.read(length).decode(), keep_blank_values=True))
    return params


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    """Answer the request: status, `headers`, Content-Length, body."""
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class FakeProviderServer:
    """A provider's fake API: every GET and POST is passed to `handle`. The port
    is bound at construction, so `url` (and settings built from it) can be read
    before start(). `url_path` is appended to the server's address for a
    gateway that lives at one path (Alipay's /gateway.do)."""

    url_path = ""

    def __init__(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.handle(self)

            def do_POST(self):
                fake.handle(self)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.url_path}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._senders: list[threading.Thread] = []

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Waits for the notifications still being sent, then closes the port."""
        for sender in self._senders:
            sender.join(timeout=SENDER_JOIN_SECONDS)
        # shutdown() waits for serve_forever to return: it would wait for ever
        # on a fake that was never started.
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def send_in_background(self, target: Callable[..., object], *args) -> None:
        """Run `target(*args)` in a thread of its own, as a provider sends a
        notification after it has answered; stop() waits for it."""
        sender = threading.Thread(target=target, args=args, daemon=True)
        self._senders.append(sender)
        sender.start()
