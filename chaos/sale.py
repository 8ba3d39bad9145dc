"""One product's sale as the chaos suite drives it from outside: buyers
checking out over HTTP, the payment provider notifying the webhook (signed
as the sandbox signs, each notification sent more than once, retried until
answered 2xx as a real provider does), and waits on the database for the
shop to catch up. Every read of the database survives its connection being
killed by a fault."""

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from django.db import OperationalError, connections

from bench.scenario import product_with_keys
from testing.processes import ProcessFailed


def db_read(read, *, attempts: int = 20):
    """Run `read()` against the database; a connection a fault killed is
    dropped and the read tried again."""
    for attempt in range(attempts):
        try:
            return read()
        except OperationalError:
            connections.close_all()
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)
    return None


def http_post(url: str, body: bytes, headers: dict, *, timeout: float = 15) -> tuple[int, dict]:
    """One POST; an error status is an answer too; no answer is status 0."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError:
        return 0, {}
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {}


@dataclass
class Sale:
    """The sale of one product on a running stack."""

    url: str
    sku: str
    product_id: int
    keys: int
    answers: Counter = field(default_factory=Counter)
    # Order number -> buyer email, for every checkout answered 202.
    accepted: dict[str, str] = field(default_factory=dict)
    # Event id -> order number, for every notification the webhook answered 2xx.
    acknowledged: dict[str, str] = field(default_factory=dict)
    webhook_answers: Counter = field(default_factory=Counter)
    # What a fault observed, for the table's notes.
    notes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _buyers: int = 0

    @classmethod
    def open(cls, *, url: str, sku: str, keys: int) -> "Sale":
        """A product on sale now, `keys` keys imported, its gate warmed."""
        product_id = product_with_keys(sku=sku, keys=keys, per_buyer_limit=1)
        return cls(url=url, sku=sku, product_id=product_id, keys=keys)

    # --- buyers

    def _buyer_email(self) -> str:
        with self._lock:
            self._buyers += 1
            return f"{self.sku.lower()}-{self._buyers}@chaos.example.com"

    def checkout_one(self) -> int:
        email = self._buyer_email()
        body = json.dumps({"sku": self.sku, "email": email, "quantity": 1}).encode()
        status, answer = http_post(f"{self.url}/api/v1/orders", body, {"Content-Type": "application/json"})
        with self._lock:
            self.answers[(status, answer.get("error", ""))] += 1
            if status == 202:
                self.accepted[answer["order_no"]] = email
        return status

    def checkout(self, count: int, *, threads: int = 16) -> None:
        """`count` buyers at once."""
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda _: self.checkout_one(), range(count)))

    def crowd_start(self, *, threads: int = 8, until_accepted: int | None = None) -> "Crowd":
        """Buyers arriving without pause until stopped (or `until_accepted` 202s)."""
        return Crowd(self, threads=threads, until_accepted=until_accepted).start()

    # --- payments, as the provider sends them

    def notify_paid(self, order_nos: list[str], *, copies: int = 2, threads: int = 16, deadline: float = 90) -> None:
        """Each order's paid notification, `copies` times concurrently, each
        copy retried until the webhook answers 2xx (or `deadline` seconds)."""
        from apps.orders.models import Order

        amounts = db_read(
            lambda: {
                n: (str(a), c)
                for n, a, c in Order.objects.filter(order_no__in=order_nos).values_list(
                    "order_no", "amount", "currency"
                )
            }
        )
        give_up = time.monotonic() + deadline
        jobs = [n for n in order_nos if n in amounts for _ in range(copies)]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda n: self._notify_until_answered(n, *amounts[n], give_up=give_up), jobs))

    def notify_paid_in_background(self, order_nos: list[str], **options) -> threading.Thread:
        payer = threading.Thread(target=self.notify_paid, args=(order_nos,), kwargs=options, daemon=True)
        payer.start()
        return payer

    def _notify_until_answered(self, order_no: str, amount: str, currency: str, *, give_up: float) -> None:
        from apps.payments.sandbox_server import notification_sign

        event_id = f"sandbox-paid-{order_no}"
        fields = {"event_id": event_id, "order_no": order_no, "amount": amount, "currency": currency, "kind": "paid"}
        while time.monotonic() < give_up:
            body, headers = notification_sign({**fields, "timestamp": int(time.time())})
            status, _ = http_post(
                f"{self.url}/payments/webhook/sandbox", body, {**headers, "Content-Type": "application/json"}
            )
            with self._lock:
                self.webhook_answers[status] += 1
                if 200 <= status < 300:
                    self.acknowledged[event_id] = order_no
            if 200 <= status < 300:
                return
            time.sleep(0.2)

    # --- the database catching up

    def orders(self):
        from apps.orders.models import Order

        return Order.objects.using("default").filter(product_id=self.product_id)

    def count(self, **filters) -> int:
        return db_read(lambda: self.orders().filter(**filters).count())

    def order_nos(self, **filters) -> list[str]:
        return db_read(lambda: list(self.orders().filter(**filters).order_by("id").values_list("order_no", flat=True)))

    def db_ids(self, order_nos: list[str]) -> list[int]:
        return db_read(lambda: list(self.orders().filter(order_no__in=order_nos).values_list("id", flat=True)))

    def persisted_wait(self, *, timeout: float = 60, settle: float = 3) -> None:
        """Until every accepted order is a row, or (a gate lost its queue)
        the product's persistence queue is empty and the row count held still
        for `settle` seconds."""
        deadline = time.monotonic() + timeout
        last, still_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            rows = self.count(order_no__in=list(self.accepted))
            if rows == len(self.accepted):
                return
            if rows != last or self._persist_queue_length():
                last, still_since = rows, time.monotonic()
            elif time.monotonic() - still_since >= settle:
                return
            time.sleep(0.1)

    def _persist_queue_length(self) -> int:
        from redis.exceptions import RedisError

        from apps.stock.redis import stock_redis
        from apps.stock.redis_keys import persist_queue_key

        try:
            return stock_redis().llen(persist_queue_key(self.product_id))
        except RedisError:
            return 1  # unknown: keep waiting

    def delivered_wait(self, *, timeout: float, watch=()) -> float:
        """Until no order of the sale is paid and undelivered and every
        acknowledged payment moved its order. Returns the time.monotonic() it
        happened. Raises ProcessFailed if a process in `watch` died, or
        TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in watch:
                if not process.alive():
                    raise ProcessFailed(f"{process.name} exited:\n{process.log_tail()}")
            paid_nos = set(self.acknowledged.values())
            settled = self.count(
                order_no__in=list(paid_nos), status__in=("delivered", "needs_attention", "refund_pending", "refunded")
            )
            if settled == len(paid_nos) and not self.count(status="paid"):
                return time.monotonic()
            time.sleep(0.05)
        raise TimeoutError(f"{self.sku}: paid orders still undelivered after {timeout}s")

    def mails(self, mail_dir: Path) -> dict:
        """Mails per delivered order, read from the file backend's files; for
        the missing ones, where each stands (`missing_why`): "leased" (a
        worker holds or held its at-most-once lease: killed mid-send, it goes
        out when the lease ends), "queued" (a retry waits in the broker),
        "sent-mark" (marked sent, no file: a send lost after the mark) or
        "unclaimed" (no worker took it yet, or its message was lost:
        reconcile re-drives it after MAIL_REDRIVE_AFTER_SECONDS)."""
        delivered = dict(
            db_read(lambda: list(self.orders().filter(status="delivered").values_list("buyer_email", "id")))
        )
        sent: Counter = Counter()
        for path in mail_dir.glob("*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("To: ") and line[4:].strip() in delivered:
                    sent[line[4:].strip()] += 1
        missing = [order_id for email, order_id in delivered.items() if not sent[email]]
        return {
            "delivered": len(delivered),
            "sent": sum(1 for email in delivered if sent[email]),
            "duplicates": sum(n - 1 for n in sent.values() if n > 1),
            "missing": len(missing),
            "missing_why": dict(Counter(self._mail_state(order_id) for order_id in missing)),
        }

    @staticmethod
    def _mail_state(order_id: int) -> str:
        from redis.exceptions import RedisError

        from apps.stock.redis import redis_text, stock_redis
        from apps.stock.redis_keys import mail_claim_key, mail_queued_key

        try:
            client = stock_redis()
            claim, queued = client.get(mail_claim_key(order_id)), client.exists(mail_queued_key(order_id))
        except RedisError:
            return "unknown"
        if claim is not None:
            return "sent-mark" if redis_text(claim) == "sent" else "leased"
        return "queued" if queued else "unclaimed"


class Crowd:
    """Buyers checking out in a loop on threads until stopped."""

    def __init__(self, sale: Sale, *, threads: int, until_accepted: int | None):
        self.sale, self.until_accepted = sale, until_accepted
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._buy, daemon=True) for _ in range(threads)]
        # When each checkout was sent and answered (time.monotonic()), and its
        # status: for "checkout answers again".
        self.timeline: list[tuple[float, float, int]] = []

    def start(self) -> "Crowd":
        for thread in self.threads:
            thread.start()
        return self

    def _buy(self) -> None:
        while not self.stopping.is_set():
            if self.until_accepted is not None and len(self.sale.accepted) >= self.until_accepted:
                return
            sent = time.monotonic()
            status = self.sale.checkout_one()
            self.timeline.append((sent, time.monotonic(), status))
            if status != 202:
                time.sleep(0.05)  # a refused buyer tries again, not in a tight loop

    def first_accepted_after(self, moment: float) -> float | None:
        """When the first checkout sent after `moment` was answered 202 (one
        sent before may have been taken just before the blow)."""
        return min(
            (answered for sent, answered, status in list(self.timeline) if sent > moment and status == 202),
            default=None,
        )

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)
