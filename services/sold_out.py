"""Sold out, answered at once: POST /bookings for a show (or a category of a reserved show) that
has no seat left and no hold that could give one back is refused from a Redis fact, without a
booking written (shared_state/sold_out.py has the keys and the fence).

- Earned by the reservation run that finds it so, after its commit (services/reservation.py).
- Cleared after every commit that may give seats back: a release (payment failed, hold expired,
  cancel finished, part cancelled, seats unblocked, capacity raised) or a cancel that opens a
  paid hold's outcome again. The models note the show (models/database.py, SEATS_BACK); the
  unit of work clears after its commit.
- Renewed while it refuses: a refusal asks for a reservation run (at most one per show and
  RENEW_INTERVAL_S, half the TTL, in each process), which earns the fact again or deletes it.
  A clear that was lost (Redis blip, a process dying between commit and clear) is thus made
  good by the next run, and at the latest by the fact's TTL.

Redis not answering is never a refusal: the request takes the normal path.
"""
from __future__ import annotations

import logging
import time

from flask import current_app

from models.bookings import sold_out_for_good

from shared_state.redis_clients import FAST_TIMEOUT_S, redis_client
from shared_state.sold_out import NONE, TTL_MS, Fact, SoldOutFacts

log = logging.getLogger(__name__)


def _facts() -> SoldOutFacts:
    return SoldOutFacts(redis_client(current_app.config["REDIS_URL"], FAST_TIMEOUT_S))


def refuses(show_id: str, wanted: set[str | None], admitted: bool) -> bool:
    """Whether the fact says what the request wants (None: a general show's seats; else the
    categories of its seats) is sold out. A show with a waiting room refuses a request without
    an Admission-Token (403) before anything else, so the fact leaves that one to the normal
    path. False when Redis cannot answer."""
    try:
        fact = _facts().read(show_id)
    except Exception as error:  # unknown is never a refusal
        log.warning("could not read the sold-out fact of show %s: %r", show_id, error)
        return False
    return bool(fact.sold_out & wanted) and (admitted or not fact.queued)


# A refusal asks for the run that earns the fact again at most this often per show and process:
# half the fact's TTL, so it is renewed before it lapses. Asking each kick interval (100 ms) kept
# the booking worker running a show-locking run ten times a second through a rush's sold-out
# part (docs/scaling.md). A clear that was lost is made good by the next such run: within this.
RENEW_INTERVAL_S = TTL_MS / 2000
_renewed: dict[str, float] = {}
RENEWALS_KEPT = 1024


def renewal_due(show_id: str) -> bool:
    """Whether this refusal should ask for the run that earns the show's fact again."""
    now = time.monotonic()
    if now - _renewed.get(show_id, -RENEW_INTERVAL_S) < RENEW_INTERVAL_S:
        return False
    if len(_renewed) >= RENEWALS_KEPT:
        _renewed.clear()
    _renewed[show_id] = now
    return True


def fence(show_id: str) -> str | None:
    """The show's fence, read before a reservation run locks the show; None if Redis cannot
    answer (the run then earns nothing)."""
    try:
        return _facts().fence(show_id)
    except Exception as error:
        log.warning("could not read the sold-out fence of show %s: %r", show_id, error)
        return None


def publish(show_id: str, fact: Fact, fence_read: str | None) -> None:
    """After a reservation run's commit: set the fact to what it found sold out, or delete it."""
    try:
        _facts().publish(show_id, fact if fence_read is not None else NONE, fence_read or "")
    except Exception as error:  # a fact not set is a request on the normal path; one not deleted expires
        log.warning("could not publish the sold-out fact of show %s: %r", show_id, error)


def found(show) -> Fact:
    """What a reservation run, the show locked and its decisions applied, publishes after commit."""
    gone = sold_out_for_good(show)
    return Fact(gone, show.waiting_room is not None) if gone else NONE


def seats_back(show_ids) -> None:
    """After a commit that may give these shows' seats back: no fact refuses them any more."""
    try:
        _facts().seats_back(sorted(show_ids))
    except Exception as error:  # the next reservation run deletes it, the TTL at the latest
        log.warning("could not clear the sold-out facts of shows %s: %r", sorted(show_ids), error)
