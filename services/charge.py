"""Charge: take the money of bookings whose seats are held (payments.charge). No seats, no charge.

Three transactions for the whole batch and one gateway call per booking:
1. claim: each charge request goes on record (payment PENDING) before any money can move;
   undoing the booking later voids that charge's key at the gateway (services/refund.py);
2. the gateway, no lock held, stopping at the first sign of trouble;
3. settle: shows locked first (declined seats go back), then the bookings.

Only a charge answered `declined` is a decline. An unknown outcome (timeout, 5xx, a proxy's 4xx,
the breaker open) and a refusal of the request itself (a bug on our side) end a batch: the rest
go on as steps of their own (services/batches.py), where an unknown outcome retries with the
same key and a refusal fails the step, recorded for admins, leaving the booking to its hold
deadline.
"""
from __future__ import annotations

import logging

from flask import current_app

from gateway.breaker import through_breaker
from gateway.client import ChargeVoided, GatewayClient, GatewayRejected, GatewayUnavailable
from models import db
from models.bookings import BookingStatus
from models.payments import FREE_CHARGE_ID, ChargeOutcome, PaymentStatus, settle_charge
from services.batches import Batch
from services.errors import StepNotReady
from services.overload import defer_if_overloaded, measure
from services.refund import start_refund
from services.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

STEP = "payments.charge"
NEXT_STEP = {
    ChargeOutcome.PAID: "tickets.make_issuable",
    ChargeOutcome.LATE_CAPTURE: "payments.refund",
}


def gateway() -> GatewayClient:
    return current_app.extensions["payment_gateway"]


def charge(booking_ids: list[str]) -> str:
    batch = Batch(STEP, booking_ids, "charge")
    if batch.single:
        defer_if_overloaded(STEP)  # NFR 3: pause new charges, before anything changes
    elif measure(current_app.config)["overloaded"]:  # each booking's own step defers itself
        with UnitOfWork() as uow:
            batch.hand_over(batch.ids, "ticket issuance overloaded")
            batch.record_hand_over(uow)
            uow.commit()
        return batch.summary()

    # 1. Claim.
    to_charge, answers = [], {}
    with UnitOfWork() as uow:
        bookings = uow.lock_bookings(batch.ids)
        batch.note_missing(bookings)
        for booking in bookings:
            if booking.status == BookingStatus.CONFIRMED and booking.payment.free:
                answers[booking.id] = (FREE_CHARGE_ID, True)  # nothing to pay: no gateway call
            elif booking.status == BookingStatus.CONFIRMED:
                booking.payment.start_charge()
                to_charge.append((booking.id, booking.amount, booking.payment_method, booking.payment.charge_key))
            elif booking.payment.status == PaymentStatus.PENDING:
                start_refund(uow, booking)  # we may have charged before it moved on: reconcile
                batch.note(booking.id, "booking moved on; reconciling")
            else:
                batch.note(booking.id, f"nothing to charge ({booking.status})")
        uow.commit()

    # 2. The gateway, one call per booking.
    for index, (booking_id, amount, method, key) in enumerate(to_charge):
        try:
            result = through_breaker(gateway().charge, reference=booking_id, amount=amount,
                                     payment_method=method, idempotency_key=key)
            answers[booking_id] = (result.id, result.captured)
        except ChargeVoided:
            # The booking moved on and its refund step voided the key: no money moved, nothing to do.
            batch.note(booking_id, "charge voided: no money moved")
        except GatewayRejected as error:
            # The gateway refused our request itself (invalid, a key reused): a bug, not a
            # decline, and retrying gets the same answer. Its own step fails and is recorded.
            log.error("gateway refused the charge request of booking %s: %r", booking_id, error)
            if batch.single:
                raise
            batch.hand_over([booking_id], "the gateway refused the request")
        except (GatewayUnavailable, StepNotReady) as error:  # an unknown outcome, the breaker open
            if batch.single:
                raise
            batch.hand_over([each[0] for each in to_charge[index:]], f"gateway trouble: {error!r}")
            break

    # 3. Settle.
    with UnitOfWork() as uow:
        declined = [booking_id for booking_id, (_, captured) in answers.items() if not captured]
        bookings = uow.lock_with_shows(answers) if declined else uow.lock_bookings(answers)
        for booking in bookings:
            outcome = settle_charge(booking, *answers[booking.id])
            batch.note(booking.id, outcome)
            if outcome in NEXT_STEP:
                uow.then(NEXT_STEP[outcome], [booking.id])
        batch.record_hand_over(uow)
        uow.commit()
    return batch.summary()
