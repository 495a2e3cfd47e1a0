"""payments.charge, payments.charge_many and payments.refund: the only code that moves money.

All are keyed by the booking and carry gateway idempotency keys derived from it, so a step
delivered twice, or retried after a timeout that hid a success, never moves money twice.
"""
import logging
import time

from celery import shared_task
from flask import current_app
from sqlalchemy import select

from gateway.client import GatewayClient, GatewayRejected, GatewayUnavailable
from models import db
from models.bookings import Booking, BookingStatus, get_booking, lock_bookings
from models.mypage import project
from models.outbox import enqueue
from models.payments import ChargeOutcome, Payment, PaymentStatus, settle_charge, settle_refund
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


# A charge's request time is put on record, then the request is sent. This is the most that may
# pass in between; a batch sends no request later than half of it after its claim (charge_many).
SEND_MARGIN_S = 5


def in_flight_window_s() -> float:
    """How long after a charge's recorded request time its money may still land: the time to
    send it, plus the client timeout. Until then, "no charge found" proves nothing."""
    return current_app.config["GATEWAY_TIMEOUT_S"] + SEND_MARGIN_S


# Charges wait out a gateway outage of up to ~20 minutes before giving up (then the re-drive job
# and the hold deadline take over); refunds get more patience: money owed back must not stall.
@shared_task(name="payments.charge", **retry_policy("payments.charge", max_retries=12))
def charge(booking_id: str) -> str:
    """Charge a booking whose seats are held. No seats, no charge."""
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
    booking.payment.start_charge()
    amount, method, key = booking.amount, booking.payment_method, booking.payment.charge_key
    show_id = booking.show_id
    db.session.commit()  # the request time is on record before any money can move

    try:
        result = through_breaker(gateway().charge, reference=booking_id, amount=amount,
                                 payment_method=method, idempotency_key=key)
        charge_id, captured = result.id, result.captured
    except GatewayRejected as error:
        # A permanent refusal of the request itself: treat it as a decline, never a retry loop.
        log.error("gateway refused the charge of booking %s: %r", booking_id, error)
        charge_id, captured = f"rejected:{booking_id}", False

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
    issuance overloaded) goes on as single payments.charge steps, each with its own retries.
    """
    if measure(current_app.config)["overloaded"]:  # NFR 3: each single step defers itself
        return _hand_over(booking_ids, "ticket issuance overloaded")

    # 1. Claim: the request time goes on record before any money can move.
    send_until = time.monotonic() + SEND_MARGIN_S / 2
    to_charge = []
    for booking in lock_bookings(booking_ids):
        if booking.status == BookingStatus.CONFIRMED:
            booking.payment.start_charge()
            to_charge.append((booking.id, booking.amount, booking.payment_method, booking.payment.charge_key))
        elif booking.payment.status == PaymentStatus.PENDING:
            booking.payment.start_refund()  # we may have charged before it moved on: reconcile
            enqueue("payments.refund", booking.id)
            _note(booking.id, "booking moved on; reconciling")
        else:
            _note(booking.id, f"nothing to charge ({booking.status})")
    db.session.commit()

    # 2. The gateway, one call per booking; stop at the first sign of trouble, and once the
    # claim is too old to cover a request sent now: a refund that finds no charge waits only
    # in_flight_window_s() after the recorded request time.
    answers, left = {}, []
    for index, (booking_id, amount, method, key) in enumerate(to_charge):
        if time.monotonic() > send_until:
            left = [each[0] for each in to_charge[index:]]
            log.warning("charge batch outlived its claim, %d charge(s) go on one by one", len(left))
            break
        try:
            result = through_breaker(gateway().charge, reference=booking_id, amount=amount,
                                     payment_method=method, idempotency_key=key)
            answers[booking_id] = (result.id, result.captured)
        except GatewayRejected as error:
            log.error("gateway refused the charge of booking %s: %r", booking_id, error)
            answers[booking_id] = (f"rejected:{booking_id}", False)
        except (GatewayUnavailable, StepNotReady) as error:  # timeouts, 5xx, the breaker open
            left = [each[0] for each in to_charge[index:]]
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

    defer_if_overloaded("payments.refund")  # NFR 3: refunds wait while issuance is overloaded
    captured_any = through_breaker(_refund_captured, booking_id)
    if not captured_any and booking.payment.charge_may_be_in_flight(in_flight_window_s()):
        raise StepNotReady("a charge may still be in flight; checking again later")

    db.session.rollback()  # end the read; take the locks in order: show, then booking
    get_show(booking.show_id, for_update=True)
    booking = get_booking(booking_id, for_update=True)
    settle_refund(booking, captured_any)
    project([booking])
    db.session.commit()
    return "refunded" if captured_any else "nothing was captured"


def _refund_captured(booking_id: str) -> bool:
    """Refund every captured charge of a booking at the gateway. Returns whether any was captured."""
    captured_any = False
    for each in gateway().find_charges(booking_id):
        if not each.captured:
            continue
        captured_any = True
        if each.refunded_amount < each.amount:
            gateway().refund(charge_id=each.id, amount=each.amount - each.refunded_amount,
                             idempotency_key=Payment.refund_key(each.id))
    return captured_any
