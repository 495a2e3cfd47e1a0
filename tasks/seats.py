"""seats.reserve: hold seats for pending bookings of a show, in arrival order."""
from celery import shared_task
from flask import current_app

from models import db
from models.bookings import Booking, BookingStatus
from models.outbox import enqueue
from models.shows import reserve_in_arrival_order
from tasks.policy import RETRY_POLICY


@shared_task(name="seats.reserve", **RETRY_POLICY)
def reserve(booking_id: str) -> str:
    """Decide this booking and every earlier pending one for the same show (a batch per show)."""
    booking = db.session.get(Booking, booking_id)
    if booking is None or booking.status != BookingStatus.PENDING:
        return "already decided"
    decided = reserve_in_arrival_order(booking.show_id, booking.seq, current_app.config["HOLD_MINUTES"])
    for each in decided:
        if each.status == BookingStatus.CONFIRMED:
            enqueue("payments.charge", each.id)
        enqueue("mypage.project", each.id)
    db.session.commit()
    return f"decided {len(decided)}"
