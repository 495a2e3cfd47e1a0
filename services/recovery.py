"""Recovery: the steps that make good what a crash, a lost message or a failing step left behind.

- `redrive_stuck` (maintenance.redrive_stuck): bookings that have not moved for a while get their
  next step again; the database says what is next, and every step is idempotent.
- `retry_failure` (POST /admin/task-failures/{id}/retry): an admin sends a failed step again.
- `run_alone` (a batch step whose worker died on every delivery): its bookings go on as steps of
  their own, so only the one that kills the worker is given up.
A PENDING booking needs none of these: it is its own record, and the outbox relay asks again for
the reservation of every show with bookings pending (tasks/maintenance.py).
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from models import db
from models.bookings import Booking, BookingStatus
from models.database import utc_now
from models.errors import Conflict, NotFound
from models.payments import Payment, PaymentStatus
from models.task_failures import TaskFailure
from models.tickets import Ticket, TicketStatus
from services import show_cancel
from services.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

# Steps an admin may send again: every one is keyed by its bookings and idempotent.
RETRYABLE_STEPS = frozenset({"payments.charge", "payments.refund", "tickets.make_issuable", "mypage.project"})
STUCK_BATCH = 500


def _stuck(statuses, older_than: datetime):
    return (select(Booking.id).where(Booking.status.in_(statuses), Booking.updated_at < older_than)
            .order_by(Booking.updated_at).limit(STUCK_BATCH))


def redrive_stuck(older_than: datetime) -> int:
    """Send again the next step of bookings that have not moved since `older_than`."""
    plan = [
        ("payments.charge", _stuck([BookingStatus.CONFIRMED], older_than)),
        ("payments.refund", _stuck([BookingStatus.CANCELLING], older_than)),
        ("payments.refund", select(Booking.id).join(Payment).where(
            Payment.status == PaymentStatus.REFUNDING, Payment.updated_at < older_than).limit(STUCK_BATCH)),
        # A PAID booking whose part was cancelled and whose refund has not shown yet (SPEC §11).
        ("payments.refund", select(Booking.id).join(Payment).where(
            Booking.status == BookingStatus.PAID, Booking.cancellation_fee + Booking.amount + Booking.refunded_amount
            < Payment.amount, Payment.amount > 0, Booking.updated_at < older_than).limit(STUCK_BATCH)),
        ("tickets.make_issuable", select(Booking.id).join(Ticket).join(Payment).where(
            Booking.status == BookingStatus.PAID, Payment.status == PaymentStatus.PAID,
            Ticket.status == TicketStatus.NOT_ISSUABLE, Booking.updated_at < older_than).limit(STUCK_BATCH)),
    ]
    count = 0
    with UnitOfWork() as uow:
        for step, query in plan:
            ids = db.session.scalars(query).all()
            uow.then(step, ids)
            count += len(ids)
        shows = show_cancel.shows_to_finish(older_than)  # a cancelled show's fan-out (its id is the step's)
        uow.then(show_cancel.STEP, shows)
        count += len(shows)
        uow.commit()
    if count:
        log.info("re-drove %d stuck step(s)", count)
    return count


def retry_failure(failure_id: int) -> TaskFailure:
    """Send a failed step again, through the outbox (durable even if the broker is down)."""
    with UnitOfWork() as uow:
        # Ids are bigint: a larger number names nothing (and must not reach the database).
        failure = db.session.get(TaskFailure, failure_id, with_for_update=True) if failure_id < 2**63 else None
        if failure is None:
            raise NotFound("task failure not found")
        if failure.task not in RETRYABLE_STEPS or not failure.booking_id:
            raise Conflict(f"{failure.task} cannot be retried from here")
        uow.then(failure.task, [failure.booking_id], alone=True)
        failure.retried_at = utc_now()
        uow.commit()
    return failure


def run_alone(step: str, booking_ids: list[str]) -> None:
    """A batch that killed its worker on every start: each booking goes on as a step of its own."""
    with UnitOfWork() as uow:
        uow.then(step, booking_ids, alone=True)
        uow.commit()
