"""Metrics that use cases count (the workers' /metrics serves them, tasks/telemetry.py)."""
from prometheus_client import Counter

RECONCILED_REFUNDS = Counter(
    "boxoffice_reconciled_refunds_total", "Refunds made by the reconciliation job (payments.reconcile): captured "
    "money on a booking that should not hold it, that no step had given back; by the booking's status.",
    ["booking_status"])
