"""The unit of work: one transaction of one use case, and what every commit must bring along.

    with UnitOfWork() as uow:
        shows = uow.lock_shows([show_id])         # shows first ...
        bookings = uow.lock_bookings(ids)         # ... then bookings: the one lock order
        ...                                       # the domain moves them
        uow.then("payments.refund", [booking.id])  # the next step, on record in this transaction
        uow.commit()

On commit it
- projects the my page for every booking the transaction changed (the moves note them:
  Booking.touch, apply_reservations), and writes the seat states its seat changes noted
  (models/seats.py), in the same transaction;
- writes the events its moves noted, with their webhook deliveries and customer mails
  (services/events.py), in the same transaction;
- commits;
- then clears the sold-out facts of the shows whose seats may come back through it (the moves
  note them: Show.release, ShowCategory.give_back, Show.change_capacity, Booking.request_cancel;
  services/sold_out.py);
- then publishes the next steps recorded with `then` (the outbox's rows, written in the same
  transaction) and asks for the reservations noted with `reserve_soon`, through the app's step
  publisher (tasks/publishing.py installs it); and hands the deliveries and mails to their queues.
  If publishing fails, or the process dies first, the outbox relay publishes the rows later (the
  webhook and mail sweeps their rows); nothing is lost.

Leaving the block without commit rolls back and forgets the steps.

Locks are taken in one order, so two use cases never deadlock: shows (in id order), then
bookings (in id order). Locking a show after a booking is refused (LockOrderError), as is a
second batch of shows that would not come after the first.
"""
from __future__ import annotations

import logging
from typing import Protocol

from flask import current_app
from sqlalchemy import select

from models import db
from models.bookings import Booking, get_customer_booking, lock_bookings, lock_pending
from models.database import CHANGED_BOOKINGS, LOCKED_SHOWS, SEATS_BACK
from models.events import forget_noted_events
from models.mypage import project_ids
from models.outbox import enqueue
from models.seats import flush_seat_states
from models.shows import Show, get_show
from services import sold_out
from services.events import Announced, write_announced

log = logging.getLogger(__name__)


class LockOrderError(RuntimeError):
    """A bug: locks asked for out of the documented order (shows, then bookings)."""


class StepPublisher(Protocol):
    """What a unit of work hands its committed steps to (tasks/publishing.py)."""

    def publish(self, ready: list[tuple[int, str, str, bool]]) -> None:
        """Publish committed outbox rows (id, step, booking id, alone) now; the relay covers a failure."""

    def reserve_soon(self, show_id: str) -> None:
        """Ask for the show's pending bookings to be decided soon (debounced)."""

    def announce(self, announced: Announced) -> None:
        """Hand committed webhook deliveries and mails to their queues; the sweeps cover a failure."""


class UnitOfWork:
    def __init__(self):
        self.session = db.session
        self._steps: list = []
        self._reserve: set[str] = set()
        self._last_show: str | None = None
        self._bookings_locked = False
        self.committed = False

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if not self.committed:
            self.rollback()

    # -- locks, in the one order ------------------------------------------------------------

    def lock_shows(self, show_ids) -> dict[str, Show]:
        """Lock these shows' rows (in id order) and read them afresh."""
        ids = sorted(set(show_ids))
        if not ids:
            return {}
        if self._bookings_locked:
            raise LockOrderError("shows are locked before bookings, never after")
        if self._last_show is not None and ids[0] <= self._last_show:
            raise LockOrderError("shows are locked in id order: lock them in one batch")
        self._last_show = ids[-1]
        return {show_id: get_show(show_id, for_update=True) for show_id in ids}

    def lock_bookings(self, booking_ids) -> list[Booking]:
        """Lock these bookings (in id order) and read them afresh, with payment, ticket and show."""
        self._bookings_locked = True
        return lock_bookings(list(booking_ids))

    def lock_with_shows(self, booking_ids) -> list[Booking]:
        """Lock these bookings' shows, then the bookings: for moves that may give seats back."""
        ids = sorted(set(booking_ids))
        if not ids:
            return []
        # A booking's show never changes, so it is read without a lock.
        self.lock_shows(self.session.scalars(select(Booking.show_id).where(Booking.id.in_(ids)).distinct()))
        return self.lock_bookings(ids)

    def lock_booking(self, booking_id: str, *, owner_id: str | None = None, with_show: bool = False) -> Booking:
        """Lock one booking (with_show: its show first, for a move that gives seats back); with
        owner_id, another customer's booking is reported missing."""
        if with_show:
            show_id = self.session.scalar(select(Booking.show_id).where(Booking.id == booking_id))
            if show_id is not None:  # else no such booking: the read below says so
                self.lock_shows([show_id])
        self._bookings_locked = True
        return get_customer_booking(booking_id, owner_id, for_update=True)

    def lock_pending(self, show_id: str, limit: int) -> list[tuple[str, int]]:
        """Lock the show's PENDING bookings, oldest first (the show must be locked already)."""
        if show_id not in self.session.info.get(LOCKED_SHOWS, ()):
            raise LockOrderError("a show's pending bookings are locked under the show's lock")
        self._bookings_locked = True
        return lock_pending(show_id, limit)

    # -- what follows the commit ------------------------------------------------------------

    def then(self, step: str, booking_ids, *, alone: bool = False) -> None:
        """Record step `step` for these bookings, to run once this transaction commits: grouped
        into batches as they are published, or, alone, each in a message of its own."""
        for booking_id in booking_ids:
            self._steps.append(enqueue(step, booking_id, alone=alone))

    def reserve_soon(self, show_id: str) -> None:
        """Ask, after commit, for the show's pending bookings to be decided (no outbox row: a
        committed PENDING booking is its own record, and the relay asks again if this is lost)."""
        self._reserve.add(show_id)

    def commit(self) -> None:
        flush_seat_states(self.session)  # the seat-state read model, in the same transaction
        changed = self.session.info.pop(CHANGED_BOOKINGS, None)
        if changed:
            project_ids(sorted(changed))
        announced = write_announced(self.session)  # the events of its moves, in the same transaction
        if self._steps:
            self.session.flush()
        ready = [(message.id, message.task, message.booking_id, message.alone) for message in self._steps]
        seats_back = self.session.info.pop(SEATS_BACK, None)
        self.session.commit()  # the session's locks and list of changes end with it (models/database.py)
        self.committed = True
        if seats_back:
            sold_out.seats_back(seats_back)
        if ready or self._reserve or announced:
            self._publish(ready, announced)

    def rollback(self) -> None:
        self.session.rollback()
        forget_noted_events(self.session)  # also those noted before any statement ran
        self._steps, self._reserve = [], set()

    def _publish(self, ready, announced: Announced | None = None) -> None:
        publisher: StepPublisher | None = current_app.extensions.get("step_publisher")
        if publisher is None:  # no broker configured here: the relay publishes the rows
            return
        if ready:
            publisher.publish(ready)
        if announced:
            publisher.announce(announced)
        for show_id in sorted(self._reserve):
            publisher.reserve_soon(show_id)


def reserve_soon(show_id: str) -> None:
    """Ask for a reservation run of the show now, outside any transaction (a sold-out refusal
    asks for one to earn its fact again: services/sold_out.py). Debounced like every ask."""
    publisher: StepPublisher | None = current_app.extensions.get("step_publisher")
    if publisher is not None:  # no broker configured here: nothing to ask
        publisher.reserve_soon(show_id)
