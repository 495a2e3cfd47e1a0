"""seats.reserve_show: hold seats for the pending bookings of a show, in arrival order, in batches."""
import logging

from celery import shared_task
from flask import current_app
from sqlalchemy import select

from models import db
from models.bookings import Booking, BookingStatus
from models.mypage import project_ids
from models.outbox import enqueue
from models.bookings import reserve_in_arrival_order
from tasks.reservation_kicks import clear_kick
from tasks.policy import RETRY_POLICY

log = logging.getLogger(__name__)
BATCH_LIMIT = 500


@shared_task(name="seats.reserve_show", booking_arg=False, **RETRY_POLICY)
def reserve_show(show_id: str) -> str:
    """Decide every pending booking of the show."""
    clear_kick(show_id)  # from here on, a newly committed booking asks for another run
    return decide_pending(show_id)


@shared_task(name="seats.reserve", **RETRY_POLICY)
def reserve(booking_id: str) -> str:
    """Decide this booking (and every other pending one of its show): the per-booking entry used
    by the re-drive job and admin retries."""
    found = db.session.execute(
        select(Booking.status, Booking.show_id).where(Booking.id == booking_id)).first()
    if found is None or found.status != BookingStatus.PENDING:
        return "already decided"
    db.session.rollback()
    return decide_pending(found.show_id)


def decide_pending(show_id: str) -> str:
    """Decide the show's pending bookings, a batch (one transaction) at a time."""
    decided = 0
    while True:
        batch = reserve_in_arrival_order(show_id, current_app.config["HOLD_MINUTES"], BATCH_LIMIT)
        for each in batch:
            if each.status == BookingStatus.CONFIRMED:
                enqueue("payments.charge_many", each.id)  # batched when published
            log.info("booking %s %s", each.id, each.status, extra={"booking_id": each.id, "outcome": each.status})
        project_ids([each.id for each in batch])
        db.session.commit()
        decided += len(batch)
        if len(batch) < BATCH_LIMIT:
            return f"decided {decided}"
