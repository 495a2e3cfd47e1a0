"""Domain events (SPEC §12): what partner systems hear of (webhooks) and customers are mailed
about, recorded in the same transaction as the change they tell of.

A move of a booking or ticket that partners hear of notes its event on the session
(`Booking._announce`, `Ticket._announce`, and the reservation's set-based statement through
`note_events`); any other event (a show cancelled) is noted with `record_event`. When the unit of
work commits (services/unit_of_work.py), `write_noted_events` writes one `events` row per noted
event, with the booking as the transaction leaves it, in that transaction: a committed change can
never lose its event, and a rolled-back one never tells of itself. Its deliveries to webhook
endpoints (models/webhooks.py) and its mail (models/mail.py) are written beside it.

An event's id is stable: every delivery of it carries the same one, so a receiver drops repeats.
"""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, Index, String, bindparam, event, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.database import db, new_id, utc_now


class EventType(StrEnum):
    BOOKING_CONFIRMED = "booking.confirmed"
    BOOKING_REJECTED = "booking.rejected"
    BOOKING_PAID = "booking.paid"
    BOOKING_PAYMENT_FAILED = "booking.payment_failed"
    BOOKING_EXPIRED = "booking.expired"
    BOOKING_CANCELLED = "booking.cancelled"
    TICKET_ISSUED = "ticket.issued"
    CHECKIN_ADMITTED = "checkin.admitted"
    SHOW_CANCELLED = "show.cancelled"


# The lifecycle moves partners hear of (models/lifecycles.py: lifecycle name, event -> type).
# A cancel is one event whichever way it ends: withdrawn while PENDING, or refunded and settled.
ANNOUNCED_MOVES = {
    ("booking", "confirm"): EventType.BOOKING_CONFIRMED,
    ("booking", "reject"): EventType.BOOKING_REJECTED,
    ("booking", "pay"): EventType.BOOKING_PAID,
    ("booking", "fail_payment"): EventType.BOOKING_PAYMENT_FAILED,
    ("booking", "expire"): EventType.BOOKING_EXPIRED,
    ("booking", "withdraw"): EventType.BOOKING_CANCELLED,
    ("booking", "finish_cancel"): EventType.BOOKING_CANCELLED,
    ("ticket", "issue"): EventType.TICKET_ISSUED,
    ("ticket", "check_in"): EventType.CHECKIN_ADMITTED,
}

# Events noted in a session's transaction, written by its unit of work's commit:
# [(type, booking id or None, data or None)]; data None means "the booking as committed".
NOTED_EVENTS = "noted_events"


class Event(db.Model):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_booking_id", "booking_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(32))
    booking_id: Mapped[str | None] = mapped_column(String(36))
    show_id: Mapped[str | None] = mapped_column(String(36))
    data: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now,
                                                 server_default=func.now(), index=True)

    def payload(self) -> dict:
        """What a webhook delivery carries (SPEC §12): the same for every delivery of the event."""
        return {"id": self.id, "type": self.type, "created_at": self.created_at.isoformat(), "data": self.data}


def announce_move(session, lifecycle: str, move: str, booking_id: str) -> None:
    """A lifecycle move happened to this booking (or its ticket): note its event, if partners
    hear of it. A plain object (no session, the unit tests) has nobody to tell."""
    event_type = ANNOUNCED_MOVES.get((lifecycle, move))
    if session is not None and event_type is not None:
        note_events(session, [(booking_id, event_type)])


def note_events(session, moves) -> None:
    """Note (booking id, event type) pairs for the unit of work to write when it commits."""
    session.info.setdefault(NOTED_EVENTS, []).extend((event_type, booking_id, None) for booking_id, event_type in moves)


def record_event(event_type: str, data: dict, *, show_id: str | None = None, booking_id: str | None = None) -> None:
    """Record an event of any type in the current transaction (a show cancelled, say): written,
    delivered and mailed like the moves' own once the unit of work commits."""
    entry = dict(data, show_id=show_id) if show_id and "show_id" not in data else dict(data)
    db.session.info.setdefault(NOTED_EVENTS, []).append((str(EventType(event_type)), booking_id, entry))


# The booking as a partner sees it when the transaction that moved it commits. No secrets: the
# ticket's code and QR are the customer's to present, not a partner's to read.
_BOOKINGS = text("""
    SELECT b.id AS booking_id, b.show_id, b.customer_id, b.status, p.status AS payment_status,
           t.status AS ticket_status, b.qty, b.amount, b.seats, b.category, b.reject_reason,
           b.cancellation_fee, b.refunded_amount, t.tid AS ticket_id, t.issued_at, t.checked_in_at,
           t.checkin_gate
    FROM bookings b JOIN payments p ON p.booking_id = b.id
    JOIN tickets t ON t.booking_id = b.id AND t.superseded_at IS NULL  -- its current ticket
    WHERE b.id IN :ids
""").bindparams(bindparam("ids", expanding=True))


def _booking_data(row) -> dict:
    data = dict(row._mapping)
    for key in ("issued_at", "checked_in_at"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


def write_noted_events(session) -> list[Event]:
    """Write the events noted in this transaction (call before the commit, after the moves
    are flushed). Returns the rows written, in the order their moves happened."""
    noted = session.info.pop(NOTED_EVENTS, None)
    if not noted:
        return []
    session.flush()  # the moves, so the rows below read the booking as it will commit
    booking_ids = sorted({booking_id for _, booking_id, data in noted if data is None})
    bookings = {row.booking_id: _booking_data(row)
                for row in session.execute(_BOOKINGS, {"ids": booking_ids})} if booking_ids else {}
    now = utc_now()
    events = []
    for event_type, booking_id, data in noted:
        data = bookings.get(booking_id) if data is None else data
        if data is None:
            continue
        events.append(Event(id=new_id(), type=event_type, booking_id=booking_id,
                            show_id=data.get("show_id"), data=data, created_at=now))
    session.add_all(events)
    session.flush()
    return events


def get_event(event_id: str) -> Event | None:
    return db.session.get(Event, event_id)


def events_of(booking_id: str) -> list[Event]:
    return list(db.session.scalars(select(Event).where(Event.booking_id == booking_id).order_by(Event.created_at)))


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _transaction_over(session) -> None:
    """A transaction's end closes its list of events (a rolled-back change tells nobody). A
    rollback before anything reached the database is no transaction's end: the unit of work
    forgets the notes then itself (`forget_noted_events`)."""
    session.info.pop(NOTED_EVENTS, None)


def forget_noted_events(session) -> None:
    session.info.pop(NOTED_EVENTS, None)
