"""Reserve: decide a show's PENDING bookings in arrival order, a batch (one transaction) at a time
(seats.reserve). Confirmed bookings hold their seats until their hold deadline and go on to
payments.charge; the others are REJECTED with a reason. A general admission show takes seats from
its count (reserve_in_seq_order); a reserved one gives each booking its picked seats or the best
available block (models/seating.py), recorded in seat_holds, whose key refuses a second holder.

Three statements a batch whatever its size: lock the show, lock and read its pending bookings
(oldest first), apply the decisions of reserve_in_seq_order (and the show's new seat count,
flushed at commit). The show's lock is held for the whole decision, so two workers never hand out
the same seats. docs/lifecycle.md, "Arrival order", says why a booking answered before another was
sent is never decided after it.

The last batch of a run also finds what of the show is sold out for good (no seat left, no hold
whose outcome is open) and, after its commit, publishes that fact for POST /bookings to refuse
from (services/sold_out.py). A run with nothing pending does just that: refusals ask for it.
"""
from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app

from models.bookings import (
    REJECTION_TEXT, Decision, Pending, apply_reservations, hold_deadline_from, reserve_in_seq_order,
    seats_held_by, shows_with_pending,
)
from models.database import utc_now
from models.errors import NotFound
from models.seating import SeatRequest, SeatState, decide_seats_in_seq_order
from models.seats import hold_seats, load_seat_map, taken_seat_ids
from models.shows import Show
from services import sold_out
from services.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

STEP = "seats.reserve"
BATCH_LIMIT = 500


def reserve(show_id: str, batch_limit: int = BATCH_LIMIT) -> str:
    """Decide every pending booking of the show that this run can see."""
    hold_minutes = current_app.config["HOLD_MINUTES"]
    decided = 0
    while True:
        fence = sold_out.fence(show_id)  # before the lock: a release committed after it bumps it later
        with UnitOfWork() as uow:
            try:
                show = uow.lock_shows([show_id])[show_id]
            except NotFound:  # a show deleted meanwhile, or asked for by mistake: nothing to decide
                return "no such show"
            pending = uow.lock_pending(show_id, batch_limit)
            now = utc_now()
            customers = [each.customer_id for each in pending]
            held_by_customer = seats_held_by(show_id, customers) if show.max_per_customer else {}
            decide = reserve_seats_in_seq_order if show.reserved else reserve_in_seq_order
            decisions = decide(show, pending, now, held_by_customer) if pending else []
            apply_reservations(decisions, hold_deadline_from(now, hold_minutes), now)
            confirmed = [each.id for each in decisions if each.holds_seats]
            uow.then("payments.charge", confirmed)
            last = len(decisions) < batch_limit
            fact = sold_out.found(show) if last else None
            uow.commit()
        for each in decisions:
            log.info("booking %s %s", each.id, each.status, extra={"booking_id": each.id, "outcome": each.status})
        decided += len(decisions)
        if last:
            sold_out.publish(show_id, fact, fence)
            return f"decided {decided}"


def reserve_seats_in_seq_order(show: Show, pending: list[Pending], now: datetime,
                               held_by_customer: dict[str, int]) -> list[Decision]:
    """Decide the PENDING bookings of a reserved show (picks and best available) and hold the
    seats of the confirmed ones: seat_holds rows, their categories' and the show's counts."""
    seat_map = load_seat_map(show.seat_map_id)
    state = SeatState(seat_map, taken_seat_ids(show.id, seat_map))
    requests = [SeatRequest.best_available(each.id, each.customer_id, each.qty, each.category)
                if each.category is not None else SeatRequest.pick(each.id, each.customer_id, each.seats or ())
                for each in pending]
    decided = decide_seats_in_seq_order(state, requests, sales_open=show.sales_open(now),
                                        held_by_customer=held_by_customer, max_per_customer=show.max_per_customer)
    holds = {each.id: each.seats for each in decided if each.holds_seats}
    hold_seats(show.id, seat_map, holds)
    by_category: dict[str, int] = {}
    for seat_ids in holds.values():
        for seat_id in seat_ids:
            category = seat_map.seat(seat_id).category
            by_category[category] = by_category.get(category, 0) + 1
    for category, count in by_category.items():
        show.category(category).take(count)
    if holds and not show.hold(sum(by_category.values())):
        raise RuntimeError(f"show {show.id}: its seat count disagrees with its seats")  # a bug: roll back
    return [Decision(each.id, each.status, REJECTION_TEXT.get(each.reject_reason), each.reject_reason,
                     each.seats or None) for each in decided]


def shows_waiting(created_before: datetime) -> list[str]:
    """Shows with bookings still PENDING that were recorded before this time (for the relay)."""
    return shows_with_pending(created_before)


