"""payments.charge and payments.refund: the only code that moves money.

Both are keyed by the booking and carry gateway idempotency keys derived from it, so a step
delivered twice, or retried after a timeout that hid a success, never moves money twice.
"""
import logging

from celery import shared_task
from flask import current_app

from gateway.client import GatewayClient, GatewayRejected
from models import db
from models.bookings import BookingStatus, get_booking
from models.mypage import project
from models.outbox import enqueue
from models.payments import ChargeOutcome, Payment, PaymentStatus, settle_charge, settle_refund
from models.shows import get_show
from tasks.breaker import through_breaker
from tasks.overload import defer_if_overloaded
from tasks.policy import StepNotReady, retry_policy

log = logging.getLogger(__name__)

NEXT_STEP = {
    ChargeOutcome.PAID: "tickets.make_issuable",
    ChargeOutcome.LATE_CAPTURE: "payments.refund",
}


def gateway() -> GatewayClient:
    return current_app.extensions["payment_gateway"]


def in_flight_window_s() -> float:
    """How long after a charge request its money may still land: the client timeout plus margin."""
    return current_app.config["GATEWAY_TIMEOUT_S"] + 5


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
