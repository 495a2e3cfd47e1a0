"""Record a booking (POST /bookings): PENDING at once, with its payment, ticket and my page entry,
in one statement; its show's reservation is asked for after the commit."""
from __future__ import annotations

from models.bookings import AcceptedBooking, Booking, record_booking
from services.unit_of_work import UnitOfWork


def record(customer_id: str, show_id: str, qty: int, payment_method: str,
           idempotency_key: str | None = None) -> tuple[Booking | AcceptedBooking, bool]:
    """Returns (booking, created). A request repeated with its Idempotency-Key returns the
    booking it made and changes nothing."""
    with UnitOfWork() as uow:
        booking, created = record_booking(customer_id, show_id, qty, payment_method, idempotency_key)
        if created:
            # The committed PENDING booking is its own outbox entry: if this ask is lost, the
            # relay finds the booking and asks again (tasks/maintenance.py).
            uow.reserve_soon(booking.show_id)
            uow.commit()
    return booking, created
