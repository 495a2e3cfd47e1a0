"""Reserve: decide a show's PENDING bookings in arrival order, a batch (one transaction) at a time
(seats.reserve). Confirmed bookings hold their seats until their hold deadline and go on to
payments.charge; the others are REJECTED with a reason.

Three statements a batch whatever its size: lock the show, lock and read its pending bookings
(oldest first), apply the decisions of reserve_in_seq_order (and the show's new seat count,
flushed at commit). The show's lock is held for the whole decision, so two workers never hand out
the same seats. docs/lifecycle.md, "Arrival order", says why a booking answered before another was
sent is never decided after it.
"""
from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app

from models.bookings import apply_reservations, hold_deadline_from, reserve_in_seq_order, shows_with_pending
from models.database import utc_now
from services.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

STEP = "seats.reserve"
BATCH_LIMIT = 500


def reserve(show_id: str, batch_limit: int = BATCH_LIMIT) -> str:
    """Decide every pending booking of the show that this run can see."""
    hold_minutes = current_app.config["HOLD_MINUTES"]
    decided = 0
    while True:
        with UnitOfWork() as uow:
            show = uow.lock_shows([show_id])[show_id]
            pending = uow.lock_pending(show_id, batch_limit)
            now = utc_now()
            decisions = reserve_in_seq_order(show, pending, now)
            apply_reservations(decisions, hold_deadline_from(now, hold_minutes), now)
            held = [each.id for each in decisions if each.holds_seats]
            uow.then("payments.charge", held)
            uow.commit()
        for each in decisions:
            log.info("booking %s %s", each.id, each.status, extra={"booking_id": each.id, "outcome": each.status})
        decided += len(decisions)
        if len(decisions) < batch_limit:
            return f"decided {decided}"


def shows_waiting(created_before: datetime) -> list[str]:
    """Shows with bookings still PENDING that were recorded before this time (for the relay)."""
    return shows_with_pending(created_before)


