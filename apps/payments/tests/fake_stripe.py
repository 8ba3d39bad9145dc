"""A local fake of Stripe's API for the tests: an HTTP server on 127.0.0.1, in
a thread, answering the calls stripe-python makes for the shop (Checkout
Sessions: create, retrieve, expire; PaymentIntents: retrieve; Refunds:
create) with Stripe's JSON shapes and error shapes, and sending events signed
as Stripe signs them (`Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t.payload")`)
to the shop's webhook. The shop's provider code talks to it unchanged: only
STRIPE_API_BASE points here."""

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from .fake_server import FakeProviderServer, http_exchange, reply

_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}_test_{next(_ids):06d}{secrets.token_hex(6)}"


def stripe_signature(payload: bytes, *, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe sends with `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


class StripeApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str = "", param: str = "", kind="invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": kind, "message": message, "code": code, "param": param}}


class FakeStripe(FakeProviderServer):
    def __init__(self, *, api_key: str | None = None, webhook_secret: str | None = None):
        super().__init__()
        self.api_key = api_key or "sk_test_" + secrets.token_hex(16)
        self.webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(16)
        self.sessions: dict[str, dict] = {}
        self.intents: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.calls: list[tuple[str, str, dict]] = []  # (method, path, form)
        self.events: list[dict] = []
        # When set, every API call is answered with this HTTP status (an outage).
        self.fail_status: int | None = None
        # When set, events are POSTed there as Stripe does, retried until 2xx.
        self.webhook_url: str | None = None
        self._idempotent: dict[str, dict] = {}
        self._lock = threading.Lock()

    # --- the server

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        split = urlsplit(handler.path)
        form = dict(parse_qsl(raw or split.query, keep_blank_values=True))
        with self._lock:
            self.calls.append((handler.command, split.path, form))
            try:
                if self.fail_status:
                    raise StripeApiError(
                        self.fail_status, "An error occurred with our connection to Stripe.", kind="api_error"
                    )
                self._authenticate(handler.headers.get("Authorization") or "")
                status, body = 200, self._route(handler.command, split.path, form, handler.headers)
            except StripeApiError as error:
                status, body = error.status, error.body
        reply(
            handler,
            status,
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Request-Id": "req_" + secrets.token_hex(7)},
        )

    def _authenticate(self, authorization: str) -> None:
        given = authorization.removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            # As Stripe does: the key shown masked, its last four characters only.
            raise StripeApiError(401, f"Invalid API Key provided: {given[:8]}****{given[-4:]}")

    def _route(self, method: str, path: str, form: dict, headers) -> dict:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["v1", "checkout", "sessions"]:
            return self._session_create(form)
        if method == "GET" and parts[:3] == ["v1", "checkout", "sessions"] and len(parts) == 4:
            return self._get(self.sessions, parts[3])
        if method == "POST" and parts[:3] == ["v1", "checkout", "sessions"] and parts[4:] == ["expire"]:
            return self._session_expire(parts[3])
        if method == "GET" and parts[:2] == ["v1", "payment_intents"] and len(parts) == 3:
            return self._get(self.intents, parts[2])
        if method == "POST" and parts == ["v1", "refunds"]:
            return self._refund_create(form, headers.get("Idempotency-Key") or "")
        raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")

    @staticmethod
    def _get(objects: dict, object_id: str) -> dict:
        if object_id not in objects:
            raise StripeApiError(404, f"No such object: '{object_id}'", code="resource_missing", param="id")
        return objects[object_id]

    def _session_create(self, form: dict) -> dict:
        now = int(time.time())
        expires_at = int(form.get("expires_at") or now + 86400)
        if not now + 1800 <= expires_at <= now + 86400:
            raise StripeApiError(
                400,
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
                code="parameter_invalid_integer",
                param="expires_at",
            )
        for required in ("mode", "success_url", "line_items[0][price_data][unit_amount]"):
            if not form.get(required):
                raise StripeApiError(400, f"Missing required param: {required}.", code="parameter_missing")
        quantity = int(form.get("line_items[0][quantity]") or 1)
        unit_amount = int(form["line_items[0][price_data][unit_amount]"])
        session_id = _new_id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": form["mode"],
            "status": "open",
            "payment_status": "unpaid",
            "amount_subtotal": unit_amount * quantity,
            "amount_total": unit_amount * quantity,
            "currency": form["line_items[0][price_data][currency]"],
            "client_reference_id": form.get("client_reference_id"),
            "metadata": _metadata(form, "metadata"),
            "payment_intent": None,
            "success_url": form["success_url"],
            "cancel_url": form.get("cancel_url"),
            "expires_at": expires_at,
            "created": now,
            "livemode": False,
            "url": f"{self.url}/c/pay/{session_id}",
            "_intent_metadata": _metadata(form, "payment_intent_data[metadata]"),
            "_product_name": form.get("line_items[0][price_data][product_data][name]"),
        }
        self.sessions[session_id] = session
        return session

    def _session_expire(self, session_id: str) -> dict:
        session = self._get(self.sessions, session_id)
        if session["status"] != "open":
            raise StripeApiError(
                400,
                f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session has a status of {session["status"]}.',
            )
        session["status"] = "expired"
        return session

    def _refund_create(self, form: dict, idempotency_key: str) -> dict:
        if idempotency_key and idempotency_key in self._idempotent:
            return self._idempotent[idempotency_key]
        intent = self._get(self.intents, form.get("payment_intent", ""))
        charge = self.charges[intent["latest_charge"]]
        amount = int(form.get("amount") or charge["amount"] - charge["amount_refunded"])
        if amount <= 0 or charge["amount_refunded"] + amount > charge["amount"]:
            raise StripeApiError(
                400, "Refund amount is greater than unrefunded amount on charge.", code="amount_too_large"
            )
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": charge["currency"],
            "payment_intent": intent["id"],
            "charge": charge["id"],
            "status": "succeeded",
            "metadata": _metadata(form, "metadata"),
        }
        self.refunds[refund["id"]] = refund
        if idempotency_key:
            self._idempotent[idempotency_key] = refund
        previous = charge["amount_refunded"]
        charge["amount_refunded"] = previous + amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._emit("charge.refunded", dict(charge), previous_attributes={"amount_refunded": previous})
        return refund

    # --- what a buyer and Stripe's servers do

    def pay(self, session_id: str, *, payment_status: str = "paid") -> dict:
        """The buyer pays the session on Stripe's page: it completes, its
        PaymentIntent and charge exist, and the event is emitted (sent when
        webhook_url is set). Returns the checkout.session.completed event."""
        with self._lock:
            session = self.sessions[session_id]
            assert session["status"] == "open", f"session is {session['status']}"
            intent_id, charge_id = _new_id("pi"), _new_id("ch")
            self.intents[intent_id] = {
                "id": intent_id,
                "object": "payment_intent",
                "amount": session["amount_total"],
                "currency": session["currency"],
                "metadata": session["_intent_metadata"],
                "latest_charge": charge_id,
                "status": "succeeded",
            }
            self.charges[charge_id] = {
                "id": charge_id,
                "object": "charge",
                "amount": session["amount_total"],
                "amount_refunded": 0,
                "currency": session["currency"],
                "payment_intent": intent_id,
                # Stripe does not copy the PaymentIntent's metadata to its charges.
                "metadata": {},
                "refunded": False,
            }
            session.update(status="complete", payment_status=payment_status, payment_intent=intent_id)
            return self._emit("checkout.session.completed", dict(session))

    def event(self, event_type: str, obj: dict, **data) -> dict:
        """An event of any type, as Stripe builds it (not sent)."""
        public = {k: v for k, v in obj.items() if not k.startswith("_")}
        return {
            "id": _new_id("evt"),
            "object": "event",
            "api_version": "2025-10-29.clover",
            "created": int(time.time()),
            "livemode": False,
            "type": event_type,
            "data": {"object": public, **data},
        }

    def _emit(self, event_type: str, obj: dict, **data) -> dict:
        event = self.event(event_type, obj, **data)
        self.events.append(event)
        if self.webhook_url:
            self.send_in_background(self._send_until_accepted, event)
        return event

    def _send_until_accepted(self, event: dict, attempts: int = 20) -> None:
        for _ in range(attempts):
            status, _body = self.send(event)
            if 200 <= status < 300:
                return
            time.sleep(0.5)

    def signed(self, event: dict, *, secret: str | None = None, timestamp: int | None = None) -> tuple[bytes, str]:
        payload = json.dumps(event).encode()
        return payload, stripe_signature(payload, secret=secret or self.webhook_secret, timestamp=timestamp)

    def send(self, event: dict, *, url: str | None = None) -> tuple[int, bytes]:
        """POST the event, signed now, to the shop's webhook; (status, body)."""
        payload, header = self.signed(event)
        request = urllib.request.Request(
            url or self.webhook_url,
            data=payload,
            headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header},
            method="POST",
        )
        try:
            return http_exchange(request, timeout=30)
        except OSError:  # the shop is not listening (yet): Stripe retries
            return 0, b""

    def create_calls(self, path: str) -> list[dict]:
        return [form for method, p, form in self.calls if method == "POST" and p == path]


def _metadata(form: dict, prefix: str) -> dict:
    return {key[len(prefix) + 1 : -1]: value for key, value in form.items() if key.startswith(prefix + "[")}
