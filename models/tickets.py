"""Tickets: what a paid booking lets the customer present at the door."""
import secrets
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.database import db, utc_now
from models.lifecycles import TICKET, IllegalMove, MovesByLifecycle, TicketStatus  # noqa: F401 (re-exported)


class Ticket(MovesByLifecycle, db.Model):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in TicketStatus) + ")", name="status_known"),
        CheckConstraint("status <> 'ISSUED' OR (issued_at IS NOT NULL AND code IS NOT NULL)", name="issued_has_code"),
    )

    # One ticket per booking: the booking id is the key.
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=TicketStatus.NOT_ISSUABLE)
    code: Mapped[str | None] = mapped_column(String(32), unique=True)
    issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    booking: Mapped["Booking"] = relationship(back_populates="ticket")  # noqa: F821

    lifecycle = TICKET

    def _moved(self) -> None:
        """The booking shows its ticket's status."""
        if self.booking is not None:  # a ticket alone (unit tests) has none
            self.booking.touch()

    def make_issuable(self) -> bool:
        """Payment captured: the customer may now issue it. Returns False when it is issuable
        already, or past that (a void ticket stays void)."""
        if not TICKET.allows("make_issuable", self.status):
            return False
        self._move("make_issuable")
        return True

    def issue(self, payment_paid: bool) -> bool:
        """Issue the ticket. Returns False when it was already issued (the same ticket stands).

        The caller holds the booking's row lock, so a concurrent cancel either ran before
        (and the ticket is VOID here) or waits until this commits.
        """
        if self.status == TicketStatus.ISSUED:
            return False
        if not payment_paid:
            raise IllegalMove(f"ticket is {self.status} and its booking unpaid: it cannot be issued")
        self._move("issue")
        self.code = secrets.token_hex(8).upper()
        self.issued_at = utc_now()
        return True

    def void(self) -> None:
        """Never issuable again: the booking was cancelled or its payment refunded."""
        self._move("void")
