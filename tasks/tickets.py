"""tickets.make_issuable(_many): a captured payment makes the booking's ticket issuable."""
import logging

from celery import shared_task

from models import db
from models.bookings import BookingStatus, get_booking, lock_bookings
from models.mypage import project
from models.payments import PaymentStatus
from tasks.policy import RETRY_POLICY

log = logging.getLogger(__name__)


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


@shared_task(name="tickets.make_issuable_many", booking_arg="batch", single_step="tickets.make_issuable", **RETRY_POLICY)
def make_issuable_many(booking_ids: list[str]) -> str:
    """The same as make_issuable for a batch of bookings, in one transaction."""
    changed = []
    for booking in lock_bookings(booking_ids):
        if booking.status != BookingStatus.PAID or booking.payment.status != PaymentStatus.PAID:
            outcome = f"not paid ({booking.status})"
        elif not booking.ticket.make_issuable():
            outcome = f"ticket already {booking.ticket.status}"
        else:
            booking.touch()
            changed.append(booking)
            outcome = "issuable"
        log.info("ticket of booking %s: %s", booking.id, outcome, extra={"booking_id": booking.id, "outcome": outcome})
    project(changed)
    db.session.commit()
    return f"issuable {len(changed)} of {len(booking_ids)}"
