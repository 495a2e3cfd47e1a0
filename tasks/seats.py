"""seats.reserve: hold seats for pending bookings of a show, in arrival order."""
from celery import shared_task
from flask import current_app
from sqlalchemy import select

from models import db
from models.bookings import Booking, BookingStatus
from models.mypage import project
from models.outbox import enqueue
from models.shows import reserve_in_arrival_order
from tasks.policy import RETRY_POLICY


@shared_task(name="seats.reserve", **RETRY_POLICY)
def reserve(booking_id: str) -> str:
    """Decide this booking and every earlier pending one for the same show (a batch per show)."""
    # Most messages in a rush find their booking already decided by an earlier batch: read only
    # the three columns needed to know that.
    found = db.session.execute(
        select(Booking.status, Booking.show_id, Booking.seq).where(Booking.id == booking_id)).first()
    if found is None or found.status != BookingStatus.PENDING:
        return "already decided"
    decided = reserve_in_arrival_order(found.show_id, found.seq, current_app.config["HOLD_MINUTES"])
    for each in decided:
        if each.status == BookingStatus.CONFIRMED:
            enqueue("payments.charge", each.id)
    project(decided)
    db.session.commit()
    return f"decided {len(decided)}"
