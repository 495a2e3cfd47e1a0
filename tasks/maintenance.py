"""Periodic jobs run by beat. Each is safe to run twice at once (row locks and guarded updates),
so two beat schedulers by mistake change nothing."""
import logging
import os
from datetime import timedelta

from celery import shared_task

from models import db
from models.database import utc_now
from models.task_failures import prune_starts
from services import expiry, mypage, recovery, reservation
from tasks.policy import RETRY_POLICY
from tasks.publishing import relay_pending
from tasks.reservation_kicks import send_reserve

log = logging.getLogger(__name__)

# A step normally follows its cause within a second; past these ages we assume its message was lost.
# Lowered by environment in tests that empty the broker (REDRIVE_STUCK_AFTER_S).
STUCK_AFTER = timedelta(seconds=float(os.environ.get("REDRIVE_STUCK_AFTER_S", "60")))
# Start counts (tasks/failures.py) are kept well past the broker's visibility timeout.
TASK_STARTS_KEPT_S = 2 * 3600
OUTBOX_RELAY_AFTER_S = 5


@shared_task(name="maintenance.relay_outbox", **RETRY_POLICY)
def relay_outbox() -> int:
    """Publish steps whose immediate publish failed (broker down, process killed), and ask again
    for the reservation of shows with bookings pending for as long (a PENDING booking is its own
    outbox entry: the API's ask after its commit may have been lost)."""
    relayed = relay_pending(OUTBOX_RELAY_AFTER_S)
    shows = reservation.shows_waiting(utc_now() - timedelta(seconds=OUTBOX_RELAY_AFTER_S))
    for show_id in shows:
        send_reserve(show_id, force=True)
    if shows:
        log.info("asked again for the reservation of %d show(s) with bookings pending", len(shows))
    return relayed + len(shows)


@shared_task(name="maintenance.expire_holds", **RETRY_POLICY)
def expire_holds(limit: int = 200) -> int:
    return expiry.expire_holds(limit)


@shared_task(name="maintenance.redrive_stuck", **RETRY_POLICY)
def redrive_stuck() -> int:
    prune_starts(TASK_STARTS_KEPT_S)
    db.session.commit()
    return recovery.redrive_stuck(utc_now() - STUCK_AFTER)


@shared_task(name="maintenance.converge_mypage", **RETRY_POLICY)
def converge_mypage() -> int:
    return mypage.converge()
