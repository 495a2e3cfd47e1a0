"""payments.charge, payments.refund and payments.reconcile: the only steps that move money.

Each is an adapter around its use case (services/charge.py, refund.py, reconcile.py), with its
retry policy: charges wait out a gateway outage of up to ~20 minutes before giving up (then the
re-drive job and the hold deadline take over); refunds get more patience, as money owed back must
not stall. Every step is keyed by its bookings and carries gateway idempotency keys derived from
them, so a step delivered twice, or retried after a timeout that hid a success, never moves money
twice.
"""
from celery import shared_task

from services import charge as charging, reconcile as reconciling, refund as refunding
from tasks.policy import retry_policy


@shared_task(name="payments.charge", booking_arg="batch", **retry_policy("payments.charge", max_retries=12))
def charge(booking_ids: list[str]) -> str:
    return charging.charge(booking_ids)


@shared_task(name="payments.refund", booking_arg="batch", **retry_policy("payments.refund", max_retries=16))
def refund(booking_ids: list[str]) -> str:
    return refunding.refund(booking_ids)


@shared_task(name="payments.reconcile", booking_arg=False, **retry_policy("payments.reconcile", max_retries=3))
def reconcile() -> str:
    return reconciling.reconcile()
