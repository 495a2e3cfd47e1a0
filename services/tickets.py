"""Tickets: a captured payment makes a booking's ticket issuable (tickets.make_issuable), and the
customer issues it (POST /bookings/{id}/ticket)."""
from __future__ import annotations

from models.bookings import BookingStatus
from models.checkin_keys import signing_key
from models.payments import PaymentStatus
from models.tickets import Ticket
from services.batches import Batch
from services.unit_of_work import UnitOfWork

STEP = "tickets.make_issuable"


def make_issuable(booking_ids: list[str]) -> str:
    """Make the tickets of these paid bookings issuable, in one transaction."""
    batch = Batch(STEP, booking_ids, "ticket")
    with UnitOfWork() as uow:
        bookings = uow.lock_bookings(batch.ids)
        batch.note_missing(bookings)
        for booking in bookings:
            if booking.status != BookingStatus.PAID or booking.payment.status != PaymentStatus.PAID:
                batch.note(booking.id, f"not paid ({booking.status})")
            elif not booking.ticket.make_issuable():
                batch.note(booking.id, f"ticket already {booking.ticket.status}")
            else:
                batch.note(booking.id, "issuable")
        uow.commit()
    return batch.summary()


def issue(booking_id: str, owner_id: str | None) -> Ticket:
    """Issue the ticket of a paid booking, with its QR signed by the show's check-in key;
    issuing again returns the same ticket (and QR, whatever key signs new tickets since).

    The booking's row lock is held, so a concurrent cancel either ran before (and the ticket is
    VOID here: refused) or waits until this commits.
    """
    with UnitOfWork() as uow:
        booking = uow.lock_booking(booking_id, owner_id=owner_id)
        booking.ticket.issue(payment_paid=booking.payment.status == PaymentStatus.PAID)
        if booking.ticket.qr is None:  # just issued, or issued before tickets were signed
            booking.ticket.sign(signing_key(booking.show_id))
        uow.commit()
    return booking.ticket
