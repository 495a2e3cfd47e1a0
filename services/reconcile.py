"""Reconcile (payments.reconcile, a beat job): the safety net behind every money step.

It compares the gateway's captures with our bookings and refunds any that a booking should not
hold (a final state other than PAID, or a PAID booking's capture other than its own charge);
a CANCELLED booking keeps its cancellation fee from its own charge (SPEC §11).
A run that meets trouble stops, keeps what it did, and the next tick goes on.
"""
from __future__ import annotations

import logging
import os
from datetime import timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from gateway.breaker import through_breaker
from gateway.client import GatewayRejected, GatewayUnavailable
from models import db
from models.bookings import FINAL_STATUSES, Booking
from models.database import utc_now
from models.payments import Payment, ReconciledRefund, ReconciliationCursor, WatchedCharge, may_keep
from observability.metrics import RECONCILED_REFUNDS
from services.errors import StepNotReady
from services.overload import measure
from services.refund import gateway, refund_rest

log = logging.getLogger(__name__)

RECONCILE_CURSOR = "gateway_charges"
RECONCILE_PAGE = 200
RECONCILE_MAX_PAGES = 25   # at most 5,000 charges a run; the next run goes on from the cursor
RECONCILE_WATCH_BATCH = 200
# Where a first run starts reading (there is no cursor yet).
RECONCILE_LOOKBACK = timedelta(seconds=float(os.environ.get("RECONCILE_LOOKBACK_S", str(24 * 3600))))


def reconcile() -> str:
    """Compare the gateway's captures with our bookings; refund any that a booking should not
    hold (a final state other than PAID, or a PAID booking's capture other than its own charge);
a CANCELLED booking keeps its cancellation fee from its own charge (SPEC §11).

    It reads the gateway's charges from where the last run stopped (a cursor in the database),
    a page per transaction, under the cursor's row lock (a second run at once skips). A capture
    on a booking not final yet is not judged: it is watched and judged once the booking is.
    Refunds use the charge's own refund key, as the refund step does, so the two never move
    money twice; each refund made here is recorded (reconciled_refunds) and counted
    (boxoffice_reconciled_refunds_total).
    """
    if measure(current_app.config)["overloaded"]:  # NFR 3: refunds wait; the next tick tries again
        return "deferred: ticket issuance overloaded"
    read = refunded = 0
    try:
        for _ in range(RECONCILE_MAX_PAGES):
            page = _reconcile_page()
            if page is None:
                return "another run is under way"
            read, refunded = read + page[0], refunded + page[1]
            if not page[2]:
                break
        refunded += _reconcile_watched()
    except (GatewayUnavailable, StepNotReady) as error:
        db.session.rollback()
        log.warning("reconciliation stopped early, the next run goes on: %r", error)
    return f"read {read} charge(s), refunded {refunded}"


def _lock_cursor() -> ReconciliationCursor | None:
    db.session.execute(insert(ReconciliationCursor).values(name=RECONCILE_CURSOR, position=None)
                       .on_conflict_do_nothing())
    db.session.commit()
    return db.session.scalar(select(ReconciliationCursor).where(ReconciliationCursor.name == RECONCILE_CURSOR)
                             .with_for_update(skip_locked=True).execution_options(populate_existing=True))


def _reconcile_page() -> tuple[int, int, bool] | None:
    """One page of the gateway's charges, judged, in one transaction. Returns (read, refunded,
    has_more), or None when another run holds the cursor."""
    cursor = _lock_cursor()
    if cursor is None:
        return None
    start = None if cursor.position else (utc_now() - RECONCILE_LOOKBACK).isoformat()
    try:
        page = through_breaker(gateway().list_charges, starting_after=cursor.position, created_after=start,
                               limit=RECONCILE_PAGE)
    except GatewayRejected as error:
        # The cursor names a charge the gateway does not know (a sandbox emptied): start afresh.
        log.error("reconciliation cursor %s refused (%r): reading again from the lookback", cursor.position, error)
        cursor.position, cursor.updated_at = None, utc_now()
        db.session.commit()
        return 0, 0, False
    money = [each for each in page.charges if each.captured and each.refunded_amount < each.amount]
    bookings = _bookings_of({each.reference for each in money})
    refunded = 0
    try:
        for each in money:
            found = bookings.get(each.reference)
            if found is None:
                log.warning("capture %s for %s, which is no booking of ours: left alone", each.id, each.reference)
                continue
            made, watch = _judge(each, *found)
            refunded += made
            if watch:
                _watch(each)
    except (GatewayUnavailable, StepNotReady):
        db.session.commit()  # keep the refunds recorded so far; the cursor stays: the page is read again
        raise
    cursor.position, cursor.updated_at = page.next_cursor, utc_now()
    db.session.commit()
    return len(page.charges), refunded, page.has_more


def _bookings_of(references) -> dict[str, tuple[str, str | None, int, int]]:
    """Booking id -> (status, the charge id its payment recorded, its cancellation fees, its amount)."""
    if not references:
        return {}
    return {booking_id: (status, charge_id, fee, amount) for booking_id, status, charge_id, fee, amount in db.session.execute(
        select(Booking.id, Booking.status, Payment.charge_id, Booking.cancellation_fee, Booking.amount)
        .join(Payment, Payment.booking_id == Booking.id)
        .where(Booking.id.in_(list(references))))}


def _judge(charge, booking_status: str, legit_charge_id: str | None, fee: int, amount: int) -> tuple[int, bool]:
    """Refund what of a capture its booking should not hold (a cancelled booking keeps its fee).
    Returns (1 if this run made a refund, whether to watch the charge: its booking not final
    yet, or the refund refused). The caller commits."""
    keep = may_keep(booking_status, legit_charge_id, charge.id, charge.amount, fee, amount)
    if keep is None:
        return 0, True
    if charge.amount - charge.refunded_amount <= keep:
        return 0, False
    try:
        made = through_breaker(refund_rest, charge, keep)
    except GatewayRejected as error:
        # Refunded meanwhile under our key with another amount, say: look again next run.
        log.warning("reconciliation refund of charge %s refused: %r", charge.id, error)
        return 0, True
    if made is None or not made.created:
        return 0, False  # the refund step (or an earlier run) gave it back: not this run's refund
    db.session.execute(insert(ReconciledRefund).values(
        charge_id=charge.id, booking_id=charge.reference, booking_status=booking_status, amount=made.amount,
        refund_id=made.id).on_conflict_do_nothing())
    RECONCILED_REFUNDS.labels(booking_status).inc()
    log.warning("reconciliation refunded %d of charge %s on booking %s (%s)", made.amount, charge.id,
                charge.reference, booking_status, extra={"booking_id": charge.reference, "outcome": "refunded"})
    return 1, False


def _watch(charge) -> None:
    db.session.execute(insert(WatchedCharge).values(charge_id=charge.id, booking_id=charge.reference)
                       .on_conflict_do_nothing())


def _reconcile_watched() -> int:
    """Judge the watched captures whose bookings are final now (under the cursor's lock)."""
    cursor = _lock_cursor()
    if cursor is None:
        return 0
    rows = db.session.execute(
        select(WatchedCharge.charge_id, Booking.status, Payment.charge_id, Booking.cancellation_fee, Booking.amount)
        .join(Booking, Booking.id == WatchedCharge.booking_id).join(Payment, Payment.booking_id == Booking.id)
        .where(Booking.status.in_(list(FINAL_STATUSES)))
        .order_by(WatchedCharge.seen_at).limit(RECONCILE_WATCH_BATCH)).all()
    refunded = 0
    try:
        for charge_id, status, legit, fee, amount in rows:
            current = through_breaker(gateway().get_charge, charge_id)
            watch = False
            if current is not None and current.captured and current.refunded_amount < current.amount:
                made, watch = _judge(current, status, legit, fee, amount)
                refunded += made
            if not watch:
                db.session.execute(WatchedCharge.__table__.delete().where(WatchedCharge.charge_id == charge_id))
    finally:
        db.session.commit()  # what was judged stays judged, even if the gateway failed us midway
    return refunded
