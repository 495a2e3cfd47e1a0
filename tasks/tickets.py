"""tickets.make_issuable: a captured payment makes the booking's ticket issuable."""
from celery import shared_task

from models import db
from models.bookings import BookingStatus, get_booking
from models.mypage import project
from models.payments import PaymentStatus
from tasks.policy import RETRY_POLICY


@shared_task(name="tickets.make_issuable", **RETRY_POLICY)
def make_issuable(booking_id: str) -> str:
    booking = get_booking(booking_id, for_update=True)
    if booking.status != BookingStatus.PAID or booking.payment.status != PaymentStatus.PAID:
        return f"not paid ({booking.status})"
    if not booking.ticket.make_issuable():
        return f"ticket already {booking.ticket.status}"
    booking.touch()
    project([booking])
    db.session.commit()
    return "issuable"
