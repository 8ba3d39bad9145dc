"""Runs the chosen faults one after the other on one stack, each on a product
of its own, and after each: waits for the shop to settle, runs `manage.py
reconcile` as an operator would, and checks the invariants (chaos/invariants.py)
for that product."""

import time
import traceback
from dataclasses import asdict, dataclass, field

from django.utils import translation

from apps.orders.services.reconcile import reconcile_run

from .faults import Fault
from .invariants import acknowledged_checkouts_kept, invariants_check
from .sale import Sale, db_read
from .stack import ChaosStack

INVARIANTS = ("I1", "I2", "I3", "I4", "I5")


@dataclass
class FaultResult:
    fault: str
    title: str
    recovered_when: str
    status: str  # "ran", "skipped", "error"
    orders: int = 0
    accepted: int = 0
    recover_seconds: float | None = None
    # Invariant code -> True (pass) / False (fail); "A" only where promised.
    checks: dict = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    lost_202: int = 0
    # Counted --mail-wait after recovery, and again when every fault has run
    # (mails_end, mails_end_seconds after this fault's count): a mail missing
    # at the first count and there at the second was late, not lost.
    mails: dict = field(default_factory=dict)
    mails_end: dict = field(default_factory=dict)
    mails_end_seconds: float | None = None
    mails_counted_at: float = field(default=0.0, repr=False)
    # HTTP status (and error code) -> count, of checkouts and of webhook calls.
    checkout_answers: dict = field(default_factory=dict)
    webhook_answers: dict = field(default_factory=dict)
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "ran" and all(self.checks.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def fault_run(
    stack: ChaosStack, fault: Fault, *, orders: int, timeout: float, run_tag: str, mail_wait: float = 20
) -> tuple[FaultResult, Sale | None]:
    """The result, and the sale (None for a skipped fault) for mails_recount."""
    result = FaultResult(fault.name, fault.title, fault.recovered_when, status="ran")
    if not fault.available(stack):
        result.status, result.note = "skipped", f"skipped: needs {fault.needs}"
        return result, None
    sku = f"CHAOS-{run_tag}-{fault.name}".upper()[:64]
    sale = Sale.open(url=stack.url, sku=sku, keys=orders)
    try:
        struck = fault.strike(stack, sale, orders=orders, timeout=timeout)
        result.recover_seconds = round(time.monotonic() - struck, 2)
    except Exception as exc:  # the table shows it; the invariants are still checked
        result.status, result.note = "error", f"{type(exc).__name__}: {exc}"[:500]
        traceback.print_exc()
        stack_heal(stack)
    _mails_wait(stack, sale, timeout=mail_wait)
    # What `manage.py reconcile` runs, in this process (configured as the shop's).
    # Its report in English, as the rest of the chaos table (the shop's LANGUAGE_CODE is Chinese).
    with translation.override("en"):
        reconcile = "\n".join(db_read(lambda: reconcile_run().lines()))
    checks = db_read(
        lambda: invariants_check(
            product_ids=[sale.product_id], gate=stack.gate.client(), acknowledged_events=sale.acknowledged
        )
    )
    kept = db_read(lambda: acknowledged_checkouts_kept(order_nos=sale.accepted))
    result.lost_202 = len(kept.violations) + kept.more
    if fault.keeps_every_202:
        checks.append(kept)
    result.checks = {check.code: check.ok for check in checks}
    result.violations = [check.summary() for check in checks if not check.ok]
    if result.violations:
        result.violations.append("reconcile said: " + " | ".join(reconcile.splitlines()))
    result.note = "; ".join([*sale.notes, *([result.note] if result.note else [])])
    result.orders = sale.count()
    result.accepted = len(sale.accepted)
    result.mails = sale.mails(stack.mail_dir)
    result.checkout_answers = {f"{status} {error}".strip(): n for (status, error), n in sale.answers.items()}
    result.webhook_answers = {str(status): n for status, n in sale.webhook_answers.items()}
    result.mails_counted_at = time.monotonic()
    return result, sale


def mails_recount(stack: ChaosStack, runs: list[tuple[FaultResult, Sale | None]]) -> None:
    """Count each fault's mails again, once every fault has run."""
    for result, sale in runs:
        if sale is not None:
            result.mails_end = sale.mails(stack.mail_dir)
            result.mails_end_seconds = round(time.monotonic() - result.mails_counted_at, 1)


def stack_heal(stack: ChaosStack) -> None:
    """After a fault that raised: the gate and one worker up again, so the
    checks (and the next fault) run on a whole stack."""
    if not stack.gate.alive():
        stack.gate.start()
    stack.workers = [w for w in stack.workers if w.alive()]
    if not stack.workers:
        stack.worker_add()


def _mails_wait(stack: ChaosStack, sale: Sale, *, timeout: float) -> None:
    """Mails follow deliveries through their own queue; give them a moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sale.mails(stack.mail_dir)["missing"]:
        time.sleep(0.2)
