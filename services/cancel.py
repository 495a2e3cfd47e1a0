"""Cancel a booking (POST /bookings/{id}/cancel): its ticket is void at once; the refund and the
seats' release follow in the refund step (services/refund.py). A booking whose ticket was checked
in is not cancelled (409); the check-in takes the same row lock, so the two never both happen."""
from __future__ import annotations

from models.bookings import Booking
from services.refund import start_refund
from services.unit_of_work import UnitOfWork


def cancel(booking_id: str, owner_id: str | None) -> Booking:
    """Cancel a booking of `owner_id` (None: an admin, any booking). Repeating it is harmless."""
    with UnitOfWork() as uow:
        booking = uow.lock_booking(booking_id, owner_id=owner_id)
        booking.ticket.ensure_cancellable()  # used at the door: too late (SPEC §10)
        if booking.request_cancel():
            start_refund(uow, booking)
        booking.ticket.void()
        uow.commit()
    return booking
