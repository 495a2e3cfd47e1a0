"""Expire holds (maintenance.expire_holds): bookings whose payment did not complete by their hold
deadline give their seats back; a charge that may still land is undone by the refund step."""
from __future__ import annotations

from sqlalchemy import select

from models import db
from models.bookings import Booking, BookingStatus
from models.database import utc_now
from models.payments import PaymentStatus
from services.refund import start_refund
from services.unit_of_work import UnitOfWork


def expire_holds(limit: int = 200) -> int:
    """Expire up to `limit` overdue holds, in one transaction. Returns how many expired."""
    due = db.session.scalars(
        select(Booking.id)
        .where(Booking.status == BookingStatus.CONFIRMED, Booking.hold_deadline < utc_now())
        .order_by(Booking.hold_deadline).limit(limit)
    ).all()
    db.session.rollback()
    expired = 0
    with UnitOfWork() as uow:
        for booking in uow.lock_with_shows(due):
            # Re-checked under the lock: its charge may have settled meanwhile.
            if booking.status != BookingStatus.CONFIRMED or booking.hold_deadline >= utc_now():
                continue
            booking.expire()
            booking.ticket.void()
            if booking.payment.status == PaymentStatus.PENDING:
                start_refund(uow, booking)  # a charge may land late
            expired += 1
        uow.commit()
    return expired
