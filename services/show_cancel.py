"""Cancel a show (POST /shows/{id}/cancel, SPEC §11): from the commit on, no booking or queue join
is taken, and every live booking is cancelled in full, without a fee, and refunded, in the
background.

- `cancel_show`, the request: the show is marked cancelled under its lock, and under its waiting
  room's (FOR UPDATE waits out every batch of joins in flight: a batch after it sees the show
  cancelled and writes nothing). The fan-out step is recorded in the same transaction (outbox).
- `cancel_bookings`, the fan-out (shows.cancel): the show's live bookings, CHUNK at a time, each
  chunk one transaction under the show's lock. A PENDING booking is withdrawn (it held nothing);
  a CONFIRMED or PAID one starts its cancel, its ticket void (used at the door or not), and its
  refund is recorded as the refund step (payments.refund) in the same transaction, published in
  batches as every step is. One run does at most RUN_LIMIT bookings and records the next run in
  its last transaction, so no run holds a worker for long and none is lost.
- A worker killed mid-way loses nothing: what a chunk committed stays done (with its refund
  steps on record), and the rest is found again by the next run, or by the re-drive job, which
  asks again for every cancelled show with live bookings left (services/recovery.py).

A booking recorded while the cancel commits (its INSERT read the show just before) is PENDING on
a cancelled show: the fan-out withdraws it, or the reservation step rejects it (sales are
closed): it is never charged. A charge in flight when its booking is cancelled is voided by the
refund step, which gives back whatever it captured.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime

from sqlalchemy import func, or_, select

from models import db
from models.bookings import Booking, BookingStatus
from models.database import utc_now
from models.events import EventType, record_event
from models.shows import Show
from models.waiting_room import WaitingRoom
from services.refund import start_refund
from services.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

STEP = "shows.cancel"
# Bookings per transaction (each holds the show's lock: a reservation of the show waits for it),
# and per run of the step. Lowered by environment in the tests that kill a worker mid-way.
CHUNK = int(os.environ.get("SHOW_CANCEL_CHUNK", "250"))
RUN_LIMIT = int(os.environ.get("SHOW_CANCEL_RUN_LIMIT", "2000"))
LIVE = (BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.PAID)


def cancel_show(show_id: str) -> Show:
    """Cancel the show; repeating it is harmless (the fan-out is asked for again)."""
    with UnitOfWork() as uow:
        show = uow.lock_shows([show_id])[show_id]
        db.session.execute(select(WaitingRoom.show_id).where(WaitingRoom.show_id == show_id).with_for_update())
        if show.cancel(utc_now()):
            record_event(EventType.SHOW_CANCELLED, {"show_id": show_id, "title": show.title, "venue": show.venue,
                                                    "starts_at": show.starts_at.isoformat(),
                                                    "cancelled_at": show.cancelled_at.isoformat()})
            log.warning("show %s cancelled: its bookings are cancelled and refunded", show_id,
                        extra={"show_id": show_id})
        uow.then(STEP, [show_id])
        uow.commit()
    return show


def _live(show_id: str):
    """The show's bookings still to cancel, in id order (the partial indexes on PENDING and on
    seats held find them)."""
    return (select(Booking.id).where(
        Booking.show_id == show_id,
        or_(Booking.status == BookingStatus.PENDING,
            Booking.seats_held.is_(True) & Booking.status.in_([BookingStatus.CONFIRMED, BookingStatus.PAID])))
        .order_by(Booking.id))


def cancel_bookings(show_ids: list[str]) -> str:
    """One run of the fan-out for these cancelled shows (shows.cancel). Returns a summary."""
    summary = []
    for show_id in sorted(set(show_ids)):
        cancelled, refunding, more = _run(show_id)
        summary.append(f"{show_id}: {cancelled} cancelled, {refunding} to refund{', more to come' if more else ''}")
    return "; ".join(summary)


def _run(show_id: str) -> tuple[int, int, bool]:
    show = db.session.get(Show, show_id)
    db.session.rollback()
    if show is None or not show.cancelled:
        return 0, 0, False
    cancelled = refunding = 0
    while True:
        with UnitOfWork() as uow:
            uow.lock_shows([show_id])
            ids = list(db.session.scalars(_live(show_id).limit(CHUNK)))
            bookings = uow.lock_bookings(ids)
            for booking in bookings:
                if booking.cancel_with_show():
                    start_refund(uow, booking)
                    refunding += 1
                cancelled += 1
            more = len(ids) == CHUNK
            if more and cancelled >= RUN_LIMIT:
                uow.then(STEP, [show_id])  # the next run, on record with this chunk
            uow.commit()
        if not more or cancelled >= RUN_LIMIT:
            return cancelled, refunding, more


def refunds(show_id: str) -> dict:
    """A cancelled show's refunds: its bookings cancelled with it, or live still (the fan-out has
    yet to reach them): total; those CANCELLED (refund settled): done; the rest: pending."""
    total, done = db.session.execute(
        select(func.count(), func.count().filter(Booking.status == BookingStatus.CANCELLED))
        .where(Booking.show_id == show_id,
               or_(Booking.cancelled_with_show.is_(True), Booking.status.in_(LIVE)))).one()
    return {"total": total, "done": done, "pending": total - done}


def shows_to_finish(cancelled_before: datetime) -> list[str]:
    """Shows cancelled before then with live bookings left (the re-drive job asks for their
    fan-out again: a run lost with its worker, a booking recorded as the cancel committed)."""
    return list(db.session.scalars(
        select(Show.id).where(Show.cancelled_at < cancelled_before, select(Booking.id).where(
            Booking.show_id == Show.id, Booking.status.in_(LIVE)).exists())))


def get_refunds_or_none(show: Show) -> dict | None:
    if not show.cancelled:
        return None
    return refunds(show.id)
