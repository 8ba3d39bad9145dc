"""Reconciliation: the periodic (and operator's) run that re-drives what is
stuck and repairs the gate. Each part lives with its use case; this runs
them in order and reports what each found."""

import logging
from dataclasses import dataclass, field

from django.db import DatabaseError
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from apps.core import metrics
from apps.coupons.services import coupon_claims_reconcile, coupon_claims_restore
from apps.stock.reconcile import GateRepairReport, gates_repair
from apps.stock.warmup import gates_check_redis_restart

from ..models import Order
from ..selectors import orders_manual_delivery_overdue

# Modules, not their names: fulfilment and the tasks module import each other.
from . import delivery_mail, expiry, fulfilment, payment, persistence

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport(GateRepairReport):
    redriven: list[str] = field(default_factory=list)
    refunds_redriven: list[str] = field(default_factory=list)
    mails_redriven: list[str] = field(default_factory=list)
    persisted: int = 0
    expired: int = 0
    needs_attention: int = 0
    coupon_uses_returned: list[str] = field(default_factory=list)
    coupon_uses_restored: list[str] = field(default_factory=list)
    # Paid orders of manual-delivery products waiting for the merchant past
    # MANUAL_DELIVERY_SLA_HOURS (fulfilment never re-drives them: a person delivers).
    manual_overdue: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the run found and fixed, in the active language (the command's --lang)."""

        def listed(label: str, items: list[str]) -> str:
            return (_("%(label)s: %(n)s") % {"label": label, "n": f"{len(items)} {' '.join(items)}"}).rstrip()

        drift = ", ".join(f"{sku} {delta:+d}" for sku, delta in self.drift_fixed.items()) or _("none")
        out = [
            listed(_("re-driven paid orders"), self.redriven),
            listed(_("re-driven refunds"), self.refunds_redriven),
            listed(_("re-driven delivery mails"), self.mails_redriven),
            _("gates distrusted after a Redis restart with old data: %(n)s") % {"n": self.rewarmed_after_restart},
            _("reservations persisted: %(n)s") % {"n": self.persisted},
            _("reservations expired: %(n)s") % {"n": self.expired},
            _("reservations brought up to date (paid, delivered, needing attention): %(n)s")
            % {"n": len(self.finished)},
            _("stock returned for ended orders: %(n)s") % {"n": len(self.released)},
            listed(_("gates rebuilt after loss"), self.rewarmed),
            _("stock drift fixed: %(drift)s") % {"drift": drift},
            _("orders needing attention: %(n)s") % {"n": self.needs_attention},
            listed(_("coupon uses given back"), self.coupon_uses_returned),
            listed(_("coupon uses counted again"), self.coupon_uses_restored),
            listed(_("manual deliveries overdue"), self.manual_overdue),
        ]
        out += [_("error: %(error)s") % {"error": e} for e in self.errors]
        return out

    @property
    def fixed_anything(self) -> bool:
        return bool(
            self.redriven
            or self.refunds_redriven
            or self.mails_redriven
            or self.rewarmed_after_restart
            or self.persisted
            or self.expired
            or self.finished
            or self.released
            or self.rewarmed
            or self.drift_fixed
            or self.coupon_uses_returned
            or self.coupon_uses_restored
        )


def reconcile_run(*, drift_settle_seconds: float = 1.0) -> ReconcileReport:
    """Re-drive what is stuck and repair the gate; report what was found."""
    report = ReconcileReport()
    report.redriven = fulfilment.fulfilment_redrive_stuck()
    report.refunds_redriven = payment.refunds_redrive_stuck()
    report.needs_attention = Order.objects.filter(status=Order.Status.NEEDS_ATTENTION).count()
    report.manual_overdue = list(orders_manual_delivery_overdue().values_list("order_no", flat=True)[:100])
    if report.manual_overdue:
        logger.warning("%d paid orders wait for a manual delivery past the SLA", len(report.manual_overdue))
    try:
        report.rewarmed_after_restart = len(gates_check_redis_restart())
        report.persisted = persistence.order_persist_queued()
        report.expired = expiry.order_expire_due()
    except (RedisError, DatabaseError) as exc:
        report.errors.append(f"{type(exc).__name__}: {exc}")
    try:
        report.mails_redriven = delivery_mail.order_mails_redrive_stuck()
    except Exception as exc:  # Redis, the database or the broker: the next run tries again
        report.errors.append(f"delivery mails: {type(exc).__name__}: {exc}")
    try:
        report.coupon_uses_returned = coupon_claims_reconcile()
        report.coupon_uses_restored = coupon_claims_restore()
    except (RedisError, DatabaseError) as exc:
        report.errors.append(f"coupon uses: {type(exc).__name__}: {exc}")
    gates_repair(report, drift_settle_seconds=drift_settle_seconds)
    metrics.reconcile_reported(report)
    return report
