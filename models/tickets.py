"""Tickets: what a paid booking lets the customer present at the door, and its check-in there
(SPEC §10). An issued ticket carries `qr`, signed with its show's check-in key
(models/checkin_keys.py); checking it in is a move of its lifecycle (ISSUED -> CHECKED_IN).

A booking has one current ticket (`Booking.ticket`). A partial cancel (SPEC §11) voids it and
makes a new one for the rest: the old row stays, VOID and superseded, so its QR is refused at
the door and the check-in list names it void."""
import secrets
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Identity, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, object_session, relationship

from models.database import db, new_id, utc_now
from models.errors import Conflict
from models.events import announce_move
from models.lifecycles import TICKET, IllegalMove, MovesByLifecycle, TicketStatus  # noqa: F401 (re-exported)


class Ticket(MovesByLifecycle, db.Model):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in TicketStatus) + ")", name="status_known"),
        CheckConstraint("status <> 'ISSUED' OR (issued_at IS NOT NULL AND code IS NOT NULL)", name="issued_has_code"),
        CheckConstraint("status <> 'CHECKED_IN' OR (checked_in_at IS NOT NULL AND qr IS NOT NULL)",
                        name="checked_in_has_time"),
        CheckConstraint("superseded_at IS NULL OR status = 'VOID'", name="superseded_is_void"),
        # One current ticket per booking; those a partial cancel replaced are kept beside it.
        Index("uq_tickets_current", "booking_id", unique=True, postgresql_where=text("superseded_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"))
    status: Mapped[str] = mapped_column(String(16), default=TicketStatus.NOT_ISSUABLE)
    code: Mapped[str | None] = mapped_column(String(32), unique=True)
    issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The ticket's id at the door (the QR's tid, the check-in list's ids), given when it is issued.
    tid: Mapped[str | None] = mapped_column(String(36), unique=True)
    qr: Mapped[str | None] = mapped_column(Text)
    checked_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    checkin_gate: Mapped[str | None] = mapped_column(String(64))
    # Replaced by a new ticket when part of the booking was cancelled (this one is VOID then).
    superseded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    booking: Mapped["Booking"] = relationship(back_populates="ticket")  # noqa: F821

    lifecycle = TICKET

    def _moved(self) -> None:
        """The booking shows its ticket's status."""
        if self.booking is not None:  # a ticket alone (unit tests) has none
            self.booking.touch()

    def _announce(self, event: str) -> None:
        announce_move(object_session(self), self.lifecycle.name, event, self.booking_id)

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
        if self.status in (TicketStatus.ISSUED, TicketStatus.CHECKED_IN):
            return False
        if not payment_paid:
            raise IllegalMove(f"ticket is {self.status} and its booking unpaid: it cannot be issued")
        self._move("issue")
        self.code = secrets.token_hex(8).upper()
        self.tid = new_id()
        self.issued_at = utc_now()
        return True

    def claims(self) -> dict:
        """What its QR says (SPEC §10): the ticket, the booking, the show, what it admits."""
        booking = self.booking
        return {"tid": self.tid, "code": self.code, "bid": booking.id, "sid": booking.show_id,
                "qty": booking.qty, "seats": list(booking.seats or [])}

    def sign(self, key) -> None:
        """Give an issued ticket its QR, signed with `key` (a CheckinKey of its show). A ticket
        issued before tickets carried one gets its door id here."""
        self.tid = self.tid or new_id()
        self.qr = key.sign(self.claims())

    def check_in(self, at: datetime, gate: str | None) -> None:
        """Admitted at the door. IllegalMove unless ISSUED (used already, or void)."""
        self._move("check_in")
        self.checked_in_at, self.checkin_gate = at, gate

    def move_check_in_earlier(self, at: datetime, gate: str | None) -> None:
        """An offline gate's scan, uploaded later, was earlier than the one on record: the record
        keeps the earliest scan (SPEC §10)."""
        if self.status != TicketStatus.CHECKED_IN or (self.checked_in_at, self.checkin_gate or "") <= (at, gate or ""):
            raise IllegalMove("only a check-in on record can move, and only to an earlier scan")
        self.checked_in_at, self.checkin_gate = at, gate  # still CHECKED_IN: nothing new for the my page

    def ensure_cancellable(self) -> None:
        """A ticket used at the door cannot be cancelled (SPEC §10)."""
        if self.status == TicketStatus.CHECKED_IN:
            raise Conflict(f"the ticket was checked in at {self.checked_in_at.isoformat()}: "
                           "a used ticket cannot be cancelled")

    def void(self) -> None:
        """Never issuable again: the booking was cancelled or its payment refunded."""
        self._move("void")

    def void_with_show(self) -> None:
        """The show was cancelled: every ticket is void, even one used at the door already."""
        self._move("void_with_show")

    def supersede(self, at: datetime) -> None:
        """Part of the booking was cancelled: this ticket is void, and a new one stands for the rest."""
        self.void()
        self.superseded_at = at
