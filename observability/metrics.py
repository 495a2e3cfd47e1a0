"""Metrics that use cases count (the workers' /metrics serves them, tasks/telemetry.py)."""
from prometheus_client import Counter

RECONCILED_REFUNDS = Counter(
    "boxoffice_reconciled_refunds_total", "Refunds made by the reconciliation job (payments.reconcile): captured "
    "money on a booking that should not hold it, that no step had given back; by the booking's status.",
    ["booking_status"])

QUEUE_JOIN_BATCHES = Counter(
    "boxoffice_queue_join_batches_total", "Batches of waiting room joins written to PostgreSQL, one INSERT and "
    "one commit each (services/queue_joins.py).")
QUEUE_JOINS_WRITTEN = Counter(
    "boxoffice_queue_joins_written_total", "Waiting room joins written in those batches (new entries and repeats).")
