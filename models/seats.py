"""The seats of reserved shows, as the database keeps them (SPEC §8; the rules are in
models/seating.py).

- `seat_maps`: a validated map, its body kept as given, so every process rebuilds the same
  `SeatMap` (cached per process: a map never changes once created).
- `seat_holds`: one row per seat of a show that is taken, with the live booking holding it (none:
  blocked). Its key is (show, seat), so the database itself refuses a second holder of a seat
  (invariant 7), whatever the code above it does.
- `show_seat_states`: the read model of GET /shows/{id}/seats, one byte per seat in map order
  (AVAILABLE, HELD, SOLD, BLOCKED) and a version. Every change of a seat notes its new byte on the
  session; the unit of work writes a show's notes in one statement as it commits (the same
  transaction as the change), so the page is never behind the seats it shows.
"""
from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.database import SEAT_STATES, db, new_id, utc_now
from models.errors import NotFound
from models.seating import SeatMap, parse_seat_map

AVAILABLE, HELD, SOLD, BLOCKED = 0, 1, 2, 3
STATUS_NAMES = ("AVAILABLE", "HELD", "SOLD", "BLOCKED")


class SeatMapRecord(db.Model):
    __tablename__ = "seat_maps"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    seat_count: Mapped[int] = mapped_column(Integer)
    categories: Mapped[list] = mapped_column(JSONB)  # [{name, seats}] in the map's order
    body: Mapped[dict] = mapped_column(JSONB)        # the map as given (validated)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now,
                                                 server_default=func.now())


class SeatHold(db.Model):
    __tablename__ = "seat_holds"

    show_id: Mapped[str] = mapped_column(ForeignKey("shows.id"), primary_key=True)
    seat_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    booking_id: Mapped[str | None] = mapped_column(ForeignKey("bookings.id"), index=True)  # None: blocked


class ShowSeatStates(db.Model):
    __tablename__ = "show_seat_states"

    show_id: Mapped[str] = mapped_column(ForeignKey("shows.id"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    states: Mapped[bytes] = mapped_column(LargeBinary)


# -- seat maps -------------------------------------------------------------------------------

def create_seat_map(body: dict) -> tuple[SeatMapRecord, SeatMap]:
    """Validate a map (InvalidInput if it is not one) and add it to the session; the caller commits."""
    seat_map = parse_seat_map(body)
    record = SeatMapRecord(name=seat_map.name, seat_count=seat_map.seat_count, body=body,
                           categories=[{"name": c.name, "seats": c.seats} for c in seat_map.categories])
    db.session.add(record)
    db.session.flush()
    _cache(record.id, seat_map)
    return record, seat_map


_maps: dict[str, SeatMap] = {}
_maps_lock = threading.Lock()
MAPS_CACHED = 16  # a parsed 100,000-seat map is some tens of MB


def _cache(seat_map_id: str, seat_map: SeatMap) -> None:
    with _maps_lock:
        if len(_maps) >= MAPS_CACHED:
            _maps.pop(next(iter(_maps)))
        _maps[seat_map_id] = seat_map


def get_seat_map_record(seat_map_id: str) -> SeatMapRecord:
    record = db.session.get(SeatMapRecord, seat_map_id)
    if record is None:
        raise NotFound("seat map not found")
    return record


def load_seat_map(seat_map_id: str) -> SeatMap:
    """The map, parsed once per process (maps never change once created)."""
    seat_map = _maps.get(seat_map_id)
    if seat_map is None:
        body = db.session.scalar(select(SeatMapRecord.body).where(SeatMapRecord.id == seat_map_id))
        if body is None:
            raise NotFound("seat map not found")
        seat_map = parse_seat_map(body)
        _cache(seat_map_id, seat_map)
    return seat_map


# -- the seats of a show ------------------------------------------------------------------------

def open_seats(show_id: str, seat_map: SeatMap) -> None:
    """A new reserved show: every seat AVAILABLE, version 1."""
    db.session.add(ShowSeatStates(show_id=show_id, version=1, states=bytes(seat_map.seat_count)))


def seat_states(show_id: str) -> tuple[int, bytes]:
    """(version, one state byte per seat in map order) of a reserved show."""
    row = db.session.execute(select(ShowSeatStates.version, ShowSeatStates.states)
                             .where(ShowSeatStates.show_id == show_id)).first()
    if row is None:
        raise NotFound("this show has no seat map")
    return row.version, bytes(row.states)


def taken_seat_ids(show_id: str, seat_map: SeatMap) -> list[str]:
    """The seats of the show that are not AVAILABLE (held, sold, blocked), read from the states
    (the caller holds the show's lock, as every writer of seats does)."""
    flush_seat_states(db.session, show_id)
    _, states = seat_states(show_id)
    seats = seat_map.seats
    return [seats[index].id for index, state in enumerate(states) if state]


_HOLD = text("""
    INSERT INTO seat_holds (show_id, seat_id, booking_id)
    SELECT :show_id, seat, booking FROM unnest(CAST(:seats AS varchar[]), CAST(:bookings AS varchar[])) AS t(seat, booking)
""")


def hold_seats(show_id: str, seat_map: SeatMap, holds: dict[str | None, tuple[str, ...]], state: int = HELD) -> None:
    """Record these seats as held by these bookings (None: blocked), in one statement. The
    table's key refuses a seat that has a holder already (IntegrityError: the transaction fails)."""
    seats = [seat for seat_ids in holds.values() for seat in seat_ids]
    if not seats:
        return
    owners = [booking_id for booking_id, seat_ids in holds.items() for _ in seat_ids]
    db.session.execute(_HOLD, {"show_id": show_id, "seats": seats, "bookings": owners})
    note_seat_states(db.session, show_id, seat_map, seats, state)


def release_seats(show_id: str, seat_map: SeatMap, booking_id: str | None, seat_ids) -> None:
    """Give back the seats a booking holds (None: unblock these seats)."""
    seat_ids = list(seat_ids)
    if not seat_ids:
        return
    holder = SeatHold.booking_id.is_(None) if booking_id is None else SeatHold.booking_id == booking_id
    db.session.execute(SeatHold.__table__.delete().where(
        SeatHold.show_id == show_id, SeatHold.seat_id.in_(seat_ids), holder))
    note_seat_states(db.session, show_id, seat_map, seat_ids, AVAILABLE)


def note_seat_states(session, show_id: str, seat_map: SeatMap, seat_ids, state: int) -> None:
    changes = session.info.setdefault(SEAT_STATES, {}).setdefault(show_id, {})
    for seat_id in seat_ids:
        changes[seat_map.seat(seat_id).index] = state


_SET_STATES = text("SELECT boxoffice_set_seat_states(:show_id, CAST(:index AS integer[]), CAST(:state AS integer[]))")


def flush_seat_states(session, show_id: str | None = None) -> None:
    """Write the noted seat states (all shows', or one show's): one statement per show."""
    pending = session.info.get(SEAT_STATES)
    if not pending:
        return
    for each in ([show_id] if show_id else sorted(pending)):
        changes = pending.pop(each, None)
        if changes:
            session.execute(_SET_STATES, {"show_id": each, "index": list(changes), "state": list(changes.values())})
