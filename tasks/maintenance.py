"""Periodic jobs run by beat. Each is safe to run twice at once (row locks and guarded updates),
so two beat schedulers by mistake change nothing."""
import logging
import os
from datetime import timedelta

from celery import shared_task
from sqlalchemy import select

from models import db
from models.bookings import Booking, BookingStatus, get_booking, shows_with_pending
from models.database import utc_now
from models.mypage import project, project_ids, stale_booking_ids
from models.outbox import enqueue
from models.payments import Payment, PaymentStatus
from models.shows import get_show
from models.task_failures import prune_starts
from models.tickets import Ticket, TicketStatus
from tasks.policy import RETRY_POLICY
from tasks.publishing import relay_pending
from tasks.reservation_kicks import kick_reservation

log = logging.getLogger(__name__)

# A step normally follows its cause within a second; past these ages we assume its message was lost.
# Lowered by environment in tests that empty the broker (REDRIVE_STUCK_AFTER_S).
STUCK_AFTER = timedelta(seconds=float(os.environ.get("REDRIVE_STUCK_AFTER_S", "60")))
# Start counts (tasks/failures.py) are kept well past the broker's visibility timeout.
TASK_STARTS_KEPT_S = 2 * 3600
OUTBOX_RELAY_AFTER_S = 5


@shared_task(name="maintenance.relay_outbox", **RETRY_POLICY)
def relay_outbox() -> int:
    """Publish steps whose immediate publish failed (broker down, process killed), and ask again
    for the reservation of shows with bookings pending for as long (a PENDING booking is its own
    outbox entry: the API's kick after its commit may have been lost)."""
    relayed = relay_pending(OUTBOX_RELAY_AFTER_S)
    shows = shows_with_pending(utc_now() - timedelta(seconds=OUTBOX_RELAY_AFTER_S))
    db.session.rollback()
    for show_id in shows:
        kick_reservation(show_id, force=True)
    if shows:
        log.info("asked again for the reservation of %d show(s) with bookings pending", len(shows))
    return relayed + len(shows)


@shared_task(name="maintenance.expire_holds", **RETRY_POLICY)
def expire_holds(limit: int = 200) -> int:
    """Release seats of bookings whose payment did not complete by the hold deadline."""
    now = utc_now()
    due = db.session.execute(
        select(Booking.id, Booking.show_id)
        .where(Booking.status == BookingStatus.CONFIRMED, Booking.hold_deadline < now)
        .order_by(Booking.hold_deadline).limit(limit)
    ).all()
    db.session.rollback()
    expired = 0
    for booking_id, show_id in due:
        show = get_show(show_id, for_update=True)
        booking = get_booking(booking_id, for_update=True)
        if booking.status == BookingStatus.CONFIRMED and booking.hold_deadline < utc_now():
            booking.expire()
            show.release(booking.qty)
            booking.ticket.void()
            if booking.payment.status == PaymentStatus.PENDING:
                booking.payment.start_refund()
                enqueue("payments.refund", booking_id)  # a charge may have landed late
            project([booking])
            expired += 1
        db.session.commit()
    return expired


def _stuck(statuses, older_than):
    return (select(Booking.id).where(Booking.status.in_(statuses), Booking.updated_at < older_than)
            .order_by(Booking.updated_at).limit(500))


@shared_task(name="maintenance.redrive_stuck", **RETRY_POLICY)
def redrive_stuck() -> int:
    """Re-send the next step of bookings that have not moved for a while (a lost message, an
    emptied broker, a step that gave up). The database says what is next; steps are idempotent."""
    cutoff = utc_now() - STUCK_AFTER
    plan = [
        ("seats.reserve", _stuck([BookingStatus.PENDING], cutoff)),
        ("payments.charge", _stuck([BookingStatus.CONFIRMED], cutoff)),
        ("payments.refund", _stuck([BookingStatus.CANCELLING], cutoff)),
        ("payments.refund", select(Booking.id).join(Payment).where(
            Payment.status == PaymentStatus.REFUNDING, Payment.updated_at < cutoff).limit(500)),
        ("tickets.make_issuable", select(Booking.id).join(Ticket).join(Payment).where(
            Booking.status == BookingStatus.PAID, Payment.status == PaymentStatus.PAID,
            Ticket.status == TicketStatus.NOT_ISSUABLE, Booking.updated_at < cutoff).limit(500)),
    ]
    prune_starts(TASK_STARTS_KEPT_S)
    count = 0
    for task, query in plan:
        for booking_id in db.session.scalars(query).all():
            enqueue(task, booking_id)
            count += 1
    db.session.commit()
    if count:
        log.info("re-drove %d stuck step(s)", count)
    return count


@shared_task(name="maintenance.converge_mypage", **RETRY_POLICY)
def converge_mypage() -> int:
    """Project every booking whose my page entry is missing or behind."""
    ids = stale_booking_ids()
    written = project_ids(ids) if ids else 0
    db.session.commit()
    return written
