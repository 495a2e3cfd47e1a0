"""One run of a batch step: the bookings it was given, what became of each, and the ones it hands
over to run alone.

Every booking step takes a list of bookings; a single step is a list of one. A batch meets
trouble (the gateway slow or down, a refused request, issuance overloaded) by handing the bookings
it could not finish over as steps of their own (`uow.then(step, ids, alone=True)`), each then
with its own retries and its own failure record; a step of one raises instead, and its task
retries it with backoff (or records its failure).
"""
from __future__ import annotations

import logging
from collections import Counter

from models.errors import InvalidInput

log = logging.getLogger(__name__)


def as_booking_ids(booking_ids: list[str] | str) -> list[str]:
    """A booking step's argument: a list of bookings (a single step is a list of one). A bare id
    is a message sent before the steps took lists (an upgrade with messages in the broker)."""
    return [booking_ids] if isinstance(booking_ids, str) else list(booking_ids)


class Batch:
    def __init__(self, step: str, booking_ids: list[str] | str, what: str):
        self.step = step
        self.ids = list(dict.fromkeys(as_booking_ids(booking_ids)))
        if not all(isinstance(each, str) and each for each in self.ids):
            raise InvalidInput(f"{step} takes a list of booking ids, not {booking_ids!r}"[:300])
        self.what = what  # how a log line names the step's work: "charge", "ticket", …
        self.outcomes: Counter = Counter()
        self.handed_over: list[str] = []

    @property
    def single(self) -> bool:
        return len(self.ids) == 1

    def note(self, booking_id: str, outcome: str) -> None:
        """One line per booking, so a booking can be followed through the logs."""
        self.outcomes[outcome] += 1
        log.info("%s of booking %s: %s", self.what, booking_id, outcome,
                 extra={"booking_id": booking_id, "outcome": outcome})

    def note_missing(self, found) -> None:
        """Ids of the batch that name no booking (a step sent by hand, say): noted, not fatal."""
        found = {booking.id for booking in found}
        for booking_id in self.ids:
            if booking_id not in found:
                self.note(booking_id, "no such booking")

    def hand_over(self, booking_ids, why: str) -> None:
        """These go on as steps of their own (the caller's unit of work records them)."""
        booking_ids = list(booking_ids)
        if not booking_ids:
            return
        self.handed_over += booking_ids
        for booking_id in booking_ids:
            self.note(booking_id, "handed over")
        log.warning("%s batch hands %d booking(s) over to steps of their own: %s", self.step, len(booking_ids), why)

    def record_hand_over(self, uow) -> None:
        uow.then(self.step, self.handed_over, alone=True)

    def summary(self) -> str:
        """What became of the batch: a step of one says its booking's outcome."""
        if self.single and len(self.outcomes) == 1:
            return next(iter(self.outcomes))
        return ", ".join(f"{outcome} {count}" for outcome, count in sorted(self.outcomes.items())) or "nothing to do"
