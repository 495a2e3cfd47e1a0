"""The SQLAlchemy handle shared by every context, and the few column helpers they all use."""
import uuid
from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.orm import DeclarativeBase, Session

# Named constraints, so Alembic migrations can refer to them and errors name the rule broken.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# expire_on_commit=False: a response shows the state its own transaction committed (202 PENDING),
# not whatever a worker made of it a millisecond later. Sessions live for one request or one
# task, and every decision is taken on rows re-read under a lock (populate_existing), so no
# decision is made on a stale copy.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


# Bookings changed in a session's transaction: what its unit of work projects onto the my page
# when it commits (services/unit_of_work.py). Kept on the session, so the ORM's moves
# (Booking.touch) and set-based SQL (apply_reservations) note them the same way.
CHANGED_BOOKINGS = "changed_bookings"


# Shows whose row the session's transaction holds locked (models/shows.py, get_show).
LOCKED_SHOWS = "locked_shows"
# Seat states noted for the seat-state read model, written before the commit (models/seats.py).
SEAT_STATES = "seat_states"
# Shows whose seats may come back through this transaction (released, or a hold whose outcome is
# open again): their sold-out facts are cleared once it commits (services/sold_out.py).
SEATS_BACK = "seats_back"


def note_changed(session, booking_ids) -> None:
    session.info.setdefault(CHANGED_BOOKINGS, set()).update(booking_ids)


def note_seats_back(session, show_id: str) -> None:
    """Seats of this show may come back once the transaction commits: not sold out for good."""
    if session is not None:  # a plain object (the unit tests): nothing to clear
        session.info.setdefault(SEATS_BACK, set()).add(show_id)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _transaction_over(session) -> None:
    """A transaction's end releases its locks and closes its list of changes."""
    session.info.pop(CHANGED_BOOKINGS, None)
    session.info.pop(LOCKED_SHOWS, None)
    session.info.pop(SEAT_STATES, None)
    session.info.pop(SEATS_BACK, None)


def new_id() -> str:
    """Opaque identifiers: random, so they reveal neither volume nor order."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
