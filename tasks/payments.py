"""payments.charge, payments.charge_many, payments.refund and payments.reconcile: the only code
that moves money.

All are keyed by the booking and carry gateway idempotency keys derived from it, so a step
delivered twice, or retried after a timeout that hid a success, never moves money twice.

No step concludes anything about money from a clock. A charge whose answer never came may still
capture later; so undoing a payment first voids the charge's key at the gateway, which answers
for good: the charge that key recorded (refund it if captured), or "voided" (nothing was taken,
and no request under that key will ever capture). The reconciliation job is the safety net
behind all of it: it reads the gateway's captures and gives back any that a booking should not
hold.
"""
import logging
import os
from datetime import timedelta

from celery import shared_task
from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from gateway.client import ChargeVoided, GatewayClient, GatewayRejected, GatewayUnavailable, Refund
from models import db
from models.bookings import FINAL_STATUSES, Booking, BookingStatus, get_booking, lock_bookings
from models.database import utc_now
from models.mypage import project
from models.outbox import enqueue
from models.payments import (
    FREE_CHARGE_ID, ChargeOutcome, Payment, PaymentStatus, ReconciledRefund, ReconciliationCursor, WatchedCharge,
    settle_charge, settle_refund, should_hold,
)
from models.shows import get_show, lock_shows
from tasks.breaker import through_breaker
from tasks.overload import defer_if_overloaded, measure
from tasks.policy import StepNotReady, retry_policy

log = logging.getLogger(__name__)

NEXT_STEP = {
    ChargeOutcome.PAID: "tickets.make_issuable_many",  # batched when published
    ChargeOutcome.LATE_CAPTURE: "payments.refund",
}


def gateway() -> GatewayClient:
    return current_app.extensions["payment_gateway"]


# Charges wait out a gateway outage of up to ~20 minutes before giving up (then the re-drive job
# and the hold deadline take over); refunds get more patience: money owed back must not stall.
@shared_task(name="payments.charge", **retry_policy("payments.charge", max_retries=12))
def charge(booking_id: str) -> str:
    """Charge a booking whose seats are held. No seats, no charge.

    Only a charge answered ``declined`` is a decline (seats back). An unknown outcome (timeout,
    5xx, a proxy's 4xx, …) retries with the same key; a refusal of the request itself (a bug on
    our side) fails the step, recorded for admins, and leaves the booking to its hold deadline,
    whose refund step voids the key.
    """
    defer_if_overloaded("payments.charge")  # NFR 3: pause new charges, before anything changes
    booking = get_booking(booking_id, for_update=True)
    if booking.status != BookingStatus.CONFIRMED:
        if booking.payment.status == PaymentStatus.PENDING:
            # We may have charged before the booking moved on: let the refund step reconcile.
            booking.payment.start_refund()
            enqueue("payments.refund", booking.id)
            db.session.commit()
            return "booking moved on; reconciling"
        return f"nothing to charge ({booking.status})"
    if booking.payment.free:
        return _settle(booking_id, booking.show_id, FREE_CHARGE_ID, True)  # nothing to pay: no gateway call
    booking.payment.start_charge()
    amount, method, key = booking.amount, booking.payment_method, booking.payment.charge_key
    show_id = booking.show_id
    db.session.commit()  # on record before any money can move: undoing it voids this key

    try:
        result = through_breaker(gateway().charge, reference=booking_id, amount=amount,
                                 payment_method=method, idempotency_key=key)
    except ChargeVoided:
        # The booking moved on and its refund step voided the key: no money moved, nothing to do.
        return "charge voided: no money moved"
    except GatewayRejected as error:
        # The gateway refused our request itself (invalid, a key reused): a bug, not a decline,
        # and retrying gets the same answer. The step fails and is recorded.
        log.error("gateway refused the charge request of booking %s: %r", booking_id, error)
        raise
    return _settle(booking_id, show_id, result.id, result.captured)


def _settle(booking_id: str, show_id: str, charge_id: str, captured: bool) -> str:
    """Record one charge's answer on its booking (locks: show first if seats go back)."""
    db.session.rollback()
    if not captured:
        get_show(show_id, for_update=True)  # seats go back: lock order is show, then booking
    booking = get_booking(booking_id, for_update=True)
    outcome = settle_charge(booking, charge_id, captured)
    if outcome in NEXT_STEP:
        enqueue(NEXT_STEP[outcome], booking_id)
    if outcome != ChargeOutcome.ALREADY_SETTLED:
        project([booking])
    db.session.commit()
    return outcome


@shared_task(name="payments.charge_many", booking_arg="batch", single_step="payments.charge", **retry_policy("payments.charge_many"))
def charge_many(booking_ids: list[str]) -> str:
    """Charge a batch of bookings (one reservation batch's worth): the same rules as
    payments.charge, in three transactions for the whole batch and one gateway call per booking.

    What the batch cannot finish at once (the gateway slow or down, its breaker open, ticket
    issuance overloaded, a refused request) goes on as single payments.charge steps, each with
    its own retries (or its own failure record).
    """
    if measure(current_app.config)["overloaded"]:  # NFR 3: each single step defers itself
        return _hand_over(booking_ids, "ticket issuance overloaded")

    # 1. Claim: the charge request goes on record before any money can move.
    to_charge, answers = [], {}
    for booking in lock_bookings(booking_ids):
        if booking.status == BookingStatus.CONFIRMED and booking.payment.free:
            answers[booking.id] = (FREE_CHARGE_ID, True)  # nothing to pay: no gateway call
        elif booking.status == BookingStatus.CONFIRMED:
            booking.payment.start_charge()
            to_charge.append((booking.id, booking.amount, booking.payment_method, booking.payment.charge_key))
        elif booking.payment.status == PaymentStatus.PENDING:
            booking.payment.start_refund()  # we may have charged before it moved on: reconcile
            enqueue("payments.refund", booking.id)
            _note(booking.id, "booking moved on; reconciling")
        else:
            _note(booking.id, f"nothing to charge ({booking.status})")
    db.session.commit()

    # 2. The gateway, one call per booking; stop at the first sign of trouble.
    left = []
    for index, (booking_id, amount, method, key) in enumerate(to_charge):
        try:
            result = through_breaker(gateway().charge, reference=booking_id, amount=amount,
                                     payment_method=method, idempotency_key=key)
            answers[booking_id] = (result.id, result.captured)
        except ChargeVoided:
            _note(booking_id, "charge voided: no money moved")  # the booking moved on, its key voided
        except GatewayRejected as error:
            # A refusal of the request itself is a bug, not a decline: the single step records it.
            log.error("gateway refused the charge request of booking %s: %r", booking_id, error)
            left.append(booking_id)
        except (GatewayUnavailable, StepNotReady) as error:  # an unknown outcome, the breaker open
            left += [each[0] for each in to_charge[index:]]
            log.warning("gateway trouble in a charge batch, %d charge(s) go on one by one: %r", len(left), error)
            break

    # 3. Settle: shows first (declined seats go back), then bookings, as every step locks them.
    if not all(captured for _, captured in answers.values()):
        lock_shows(set(db.session.scalars(select(Booking.show_id).where(Booking.id.in_(list(answers))))))
    counts: dict[str, int] = {}
    settled = []
    for booking in lock_bookings(list(answers)):
        outcome = settle_charge(booking, *answers[booking.id])
        counts[outcome] = counts.get(outcome, 0) + 1
        _note(booking.id, outcome)
        if outcome in NEXT_STEP:
            enqueue(NEXT_STEP[outcome], booking.id)
        if outcome != ChargeOutcome.ALREADY_SETTLED:
            settled.append(booking)
    project(settled)
    for booking_id in left:
        enqueue("payments.charge", booking_id)
        _note(booking_id, "handed over")
    db.session.commit()
    return ", ".join(f"{outcome} {n}" for outcome, n in sorted(counts.items())) + (f", handed over {len(left)}" if left else "")


def _note(booking_id: str, outcome: str) -> None:
    """One line per booking of a batch step, so a booking can be followed through the logs."""
    log.info("charge of booking %s: %s", booking_id, outcome, extra={"booking_id": booking_id, "outcome": outcome})


def _hand_over(booking_ids: list[str], why: str) -> str:
    for booking_id in booking_ids:
        enqueue("payments.charge", booking_id)
        _note(booking_id, "handed over")
    db.session.commit()
    log.warning("charge batch of %d handed over to single steps: %s", len(booking_ids), why)
    return f"handed over {len(booking_ids)}: {why}"


@shared_task(name="payments.refund", **retry_policy("payments.refund", max_retries=16))
def refund(booking_id: str) -> str:
    """Give back whatever the gateway captured for a booking that is cancelled or over, then
    finish the cancel (seats back). Also used to reconcile: it asks the gateway, not our rows."""
    booking = get_booking(booking_id)
    if booking.status in (BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.PAID):
        return f"nothing to refund ({booking.status})"
    if booking.status != BookingStatus.CANCELLING and not booking.payment.needs_refund_check:
        return "already settled"

    if booking.payment.free:
        # No gateway call was ever made for it, so none is needed to undo it.
        captured_any = booking.payment.charge_id == FREE_CHARGE_ID
    else:
        defer_if_overloaded("payments.refund")  # NFR 3: refunds wait while issuance is overloaded
        key = booking.payment.charge_key if booking.payment.charge_requested else None
        captured_any = through_breaker(_undo_charges, booking_id, key)

    db.session.rollback()  # end the read; take the locks in order: show, then booking
    get_show(booking.show_id, for_update=True)
    booking = get_booking(booking_id, for_update=True)
    settle_refund(booking, captured_any)
    project([booking])
    db.session.commit()
    return "refunded" if captured_any else "nothing was captured"


def _undo_charges(booking_id: str, charge_key: str | None) -> bool:
    """Make sure the gateway holds no money for a booking. Returns whether any was captured.

    If a charge was ever requested, its key is voided first: from then on no request under it
    can capture, and the answer names the charge it did record, if any. Then every captured
    charge of the booking (the one the void named, and any other the gateway lists) is refunded.
    Only the gateway's answers decide; "nothing was taken" is a void answered voided or declined.
    """
    charges = {}
    if charge_key is not None:
        void = gateway().void_charge(idempotency_key=charge_key)
        if void.charge is not None:
            charges[void.charge.id] = void.charge
    for each in gateway().find_charges(booking_id):  # after the void: nothing new can appear under our key
        charges[each.id] = each
    captured_any = False
    for each in charges.values():
        if not each.captured:
            continue
        captured_any = True
        if each.refunded_amount < each.amount:
            _refund_rest(each)
    return captured_any


def _refund_rest(charge) -> Refund | None:
    """Refund what is left of a captured charge, under the charge's own refund key (the refund
    step and the reconciliation job use the same key and amount: whichever comes second replays)."""
    try:
        return gateway().refund(charge_id=charge.id, amount=charge.amount - charge.refunded_amount,
                                idempotency_key=Payment.refund_key(charge.id))
    except GatewayRejected as error:
        if error.code == "nothing_to_refund":
            return None  # given back in the meantime
        if error.code == "refund_exceeds_remaining":
            raise StepNotReady(f"charge {charge.id} was partly refunded meanwhile; reading it again") from error
        raise


# -- reconciliation ---------------------------------------------------------------------------

RECONCILE_CURSOR = "gateway_charges"
RECONCILE_PAGE = 200
RECONCILE_MAX_PAGES = 25   # at most 5,000 charges a run; the next run goes on from the cursor
RECONCILE_WATCH_BATCH = 200
# Where a first run starts reading (there is no cursor yet).
RECONCILE_LOOKBACK = timedelta(seconds=float(os.environ.get("RECONCILE_LOOKBACK_S", str(24 * 3600))))


# A beat job: a run that meets trouble stops, keeps what it did, and the next tick goes on.
@shared_task(name="payments.reconcile", booking_arg=False, **retry_policy("payments.reconcile", max_retries=3))
def reconcile() -> str:
    """Compare the gateway's captures with our bookings; refund any that a booking should not
    hold (a final state other than PAID, or a PAID booking's capture other than its own charge).

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


def _bookings_of(references) -> dict[str, tuple[str, str | None]]:
    """Booking id -> (status, the charge id its payment recorded)."""
    if not references:
        return {}
    return {booking_id: (status, charge_id) for booking_id, status, charge_id in db.session.execute(
        select(Booking.id, Booking.status, Payment.charge_id).join(Payment, Payment.booking_id == Booking.id)
        .where(Booking.id.in_(list(references))))}


def _judge(charge, booking_status: str, legit_charge_id: str | None) -> tuple[int, bool]:
    """Refund a capture its booking should not hold. Returns (1 if this run made a refund, whether
    to watch the charge: its booking not final yet, or the refund refused). The caller commits."""
    verdict = should_hold(booking_status, legit_charge_id, charge.id)
    if verdict is None:
        return 0, True
    if verdict:
        return 0, False
    try:
        made = through_breaker(_refund_rest, charge)
    except GatewayRejected as error:
        # Refunded meanwhile under our key with another amount, say: look again next run.
        log.warning("reconciliation refund of charge %s refused: %r", charge.id, error)
        return 0, True
    if made is None or not made.created:
        return 0, False  # the refund step (or an earlier run) gave it back: not this run's refund
    from tasks.telemetry import RECONCILED_REFUNDS
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
        select(WatchedCharge.charge_id, Booking.status, Payment.charge_id)
        .join(Booking, Booking.id == WatchedCharge.booking_id).join(Payment, Payment.booking_id == Booking.id)
        .where(Booking.status.in_(list(FINAL_STATUSES)))
        .order_by(WatchedCharge.seen_at).limit(RECONCILE_WATCH_BATCH)).all()
    refunded = 0
    try:
        for charge_id, status, legit in rows:
            current = through_breaker(gateway().get_charge, charge_id)
            watch = False
            if current is not None and current.captured and current.refunded_amount < current.amount:
                made, watch = _judge(current, status, legit)
                refunded += made
            if not watch:
                db.session.execute(WatchedCharge.__table__.delete().where(WatchedCharge.charge_id == charge_id))
    finally:
        db.session.commit()  # what was judged stays judged, even if the gateway failed us midway
    return refunded
