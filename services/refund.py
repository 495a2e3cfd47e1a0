"""Refund: give back whatever the gateway captured for a booking that no longer wants its money
(cancelled, expired, paid too late), then finish what waited on it (a cancel: seats back).

`start_refund` is the one place a refund is asked for; `refund` is the step (payments.refund).
It asks the gateway, not our rows: a charge whose answer never came may still capture, so the
refund first voids the charge's idempotency key, and the gateway answers for good (the charge
that key recorded, refunded if captured, or "voided": nothing was taken, and nothing under that
key ever will be). No clock decides anything about money.

A booking keeps part of its own charge (SPEC §11): a cancelled one its cancellation fees, a PAID
one whose part was cancelled its amount and fees (`Booking.keeps`). The charge is refunded down
to that, never below, however often the step runs. The amount is worked out from the gateway's
answer each time (what is left minus what is kept), under a key named by what is kept, so a
retry after a refund that went through finds nothing left to give back, and two part cancels
never share a key; a fee of 100% gives nothing back and calls no refund at all.
"""
from __future__ import annotations

from flask import current_app

from gateway.breaker import through_breaker
from gateway.client import GatewayClient, GatewayRejected, GatewayUnavailable, Refund
from models import db
from models.bookings import Booking, BookingStatus, read_bookings
from models.payments import FREE_CHARGE_ID, Payment, settle_part_refund, settle_refund
from services.batches import Batch
from services.errors import StepNotReady
from services.overload import defer_if_overloaded, measure
from services.unit_of_work import UnitOfWork

STEP = "payments.refund"


def gateway() -> GatewayClient:
    return current_app.extensions["payment_gateway"]


def start_refund(uow: UnitOfWork, booking: Booking) -> None:
    """Ask for the refund step of a booking undone in this unit of work (it finishes a cancel
    too, so it is asked for even when no money can have been taken)."""
    if booking.payment.may_hold_money:
        booking.payment.start_refund()
    uow.then(STEP, [booking.id])


def refund(booking_ids: list[str]) -> str:
    """Make sure the gateway holds no money for these bookings, then settle them: the gateway
    first (no lock held), then one transaction, shows locked before bookings."""
    batch = Batch(STEP, booking_ids, "refund")
    captured = {}          # booking id -> whether the gateway had captured any money for it
    # (booking id, its charge key or None if no charge was ever requested, what it keeps)
    through_gateway = []
    bookings = read_bookings(batch.ids)
    batch.note_missing(bookings)
    part_refunds = {}      # booking id -> what its charge keeps, for a PAID booking whose part was cancelled
    for booking in bookings:
        if booking.status == BookingStatus.PAID and booking.refund_owed:
            # Part of it was cancelled: its charge, captured, is refunded down to what it keeps.
            part_refunds[booking.id] = booking.keeps
            through_gateway.append((booking.id, None, (booking.payment.charge_id, booking.keeps)))
        elif booking.status in (BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.PAID):
            batch.note(booking.id, f"nothing to refund ({booking.status})")
        elif booking.status != BookingStatus.CANCELLING and not booking.payment.needs_refund_check:
            batch.note(booking.id, "already settled")
        elif booking.payment.free:
            # No gateway call was ever made for it, so none is needed to undo it.
            captured[booking.id] = booking.payment.charge_id == FREE_CHARGE_ID
        else:
            through_gateway.append((booking.id, booking.payment.charge_key if booking.payment.charge_requested else None,
                                    _keeps(booking)))
    db.session.rollback()  # end the read: no lock is held while the gateway answers

    if through_gateway and batch.single:
        defer_if_overloaded(STEP)  # NFR 3: refunds wait while issuance is overloaded
    elif through_gateway and measure(current_app.config)["overloaded"]:
        batch.hand_over([booking_id for booking_id, _, _ in through_gateway], "ticket issuance overloaded")
        through_gateway = []
    for index, (booking_id, key, keeps) in enumerate(through_gateway):
        try:
            captured[booking_id] = through_breaker(undo_charges, booking_id, key, keeps)
        except (GatewayUnavailable, StepNotReady, GatewayRejected) as error:
            if batch.single:
                raise
            batch.hand_over([each for each, _, _ in through_gateway[index:]], repr(error))
            break

    with UnitOfWork() as uow:
        settled = uow.lock_with_shows(captured)
        for booking in settled:
            if booking.id in part_refunds:
                if booking.status == BookingStatus.PAID:  # else cancelled meanwhile: its own refund settles it
                    settle_part_refund(booking, part_refunds[booking.id])
                batch.note(booking.id, "part refunded")
                continue
            settle_refund(booking, captured[booking.id])
            batch.note(booking.id, "refunded" if captured[booking.id] else "nothing was captured")
        batch.record_hand_over(uow)
        uow.commit()
    return batch.summary()


def _keeps(booking: Booking) -> tuple[str, int] | None:
    """(its own charge, the fees kept from it) for a cancel that costs a fee; None: all goes back."""
    if booking.status == BookingStatus.CANCELLING and booking.cancellation_fee > 0 and booking.payment.charge_id:
        return booking.payment.charge_id, booking.keeps
    return None


def undo_charges(booking_id: str, charge_key: str | None, keeps: tuple[str, int] | None = None) -> bool:
    """Make sure the gateway holds no money for a booking but the fee `keeps` names (charge id,
    amount kept from it). Returns whether any was captured.

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
        keep = keeps[1] if keeps is not None and keeps[0] == each.id else 0
        refund_rest(each, keep)
    return captured_any


def refund_rest(charge, keep: int = 0) -> Refund | None:
    """Refund what is left of a captured charge but `keep`, under the charge's own refund key
    (the refund step and the reconciliation job use the same key and amount: whichever comes
    second replays). Nothing left above `keep`: no call, None."""
    amount = charge.amount - charge.refunded_amount - keep
    if amount <= 0:
        return None
    try:
        return gateway().refund(charge_id=charge.id, amount=amount,
                                idempotency_key=Payment.refund_key(charge.id, keep))
    except GatewayRejected as error:
        if error.code == "nothing_to_refund":
            return None  # given back in the meantime
        if error.code == "refund_exceeds_remaining":
            raise StepNotReady(f"charge {charge.id} was partly refunded meanwhile; reading it again") from error
        raise
