"""Cancel a booking (POST /bookings/{id}/cancel), whole or in part (SPEC §11).

Whole: its ticket is void at once; the refund and the seats' release follow in the refund step
(services/refund.py). In part (a PAID booking, `qty` or `seats`): those seats go back at once,
under the show's lock, the booking stays PAID with the rest and a new ticket, and the refund
step gives back the part's amount less its fee.

A booking whose ticket was checked in is not cancelled, whole or in part (409); the check-in
takes the same row lock, so the two never both happen.
"""
from __future__ import annotations

from models.bookings import Booking
from models.database import utc_now
from services.refund import STEP as REFUND, start_refund
from services.unit_of_work import UnitOfWork


def cancel(booking_id: str, owner_id: str | None, *, qty: int | None = None,
           seats: list[str] | None = None) -> Booking:
    """Cancel a booking of `owner_id` (None: an admin, any booking), or the part of it `qty` or
    `seats` name. Repeating a whole cancel is harmless; asking for a part that is the whole
    booking cancels the whole booking."""
    if qty is None and seats is None:
        return _cancel_whole(booking_id, owner_id)
    with UnitOfWork() as uow:
        booking = uow.lock_booking(booking_id, owner_id=owner_id, with_show=True)
        whole = qty == booking.qty if seats is None else sorted(set(seats)) == sorted(booking.seats or ())
        if not whole:
            if booking.cancel_part(qty, seats, utc_now()):
                uow.then(REFUND, [booking.id])
            uow.commit()
    return _cancel_whole(booking_id, owner_id) if whole else booking


def _cancel_whole(booking_id: str, owner_id: str | None) -> Booking:
    with UnitOfWork() as uow:
        booking = uow.lock_booking(booking_id, owner_id=owner_id)
        booking.ticket.ensure_cancellable()  # used at the door: too late (SPEC §10)
        if booking.request_cancel():
            start_refund(uow, booking)
        booking.ticket.void()
        uow.commit()
    return booking
