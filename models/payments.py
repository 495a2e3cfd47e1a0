"""Payments: the charge and refund of one booking, as our side records them.

The gateway's ledger is the truth about money; this row is our view of it, kept in step by
the payments tasks. Charges and refunds carry idempotency keys derived from the booking, so
asking twice never moves money twice.

The reconciliation job (payments.reconcile) keeps its own records here too: where it is in the
gateway's list of charges, the captures it waits to judge, and every refund it made.
"""
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.database import db, utc_now
from models.lifecycles import (  # noqa: F401 (statuses re-exported)
    FINAL_STATUSES, PAYMENT, BookingStatus, MovesByLifecycle, PaymentStatus,
)


class Payment(MovesByLifecycle, db.Model):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in PaymentStatus) + ")", name="status_known"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
    )

    # One payment per booking: the booking id is the key.
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.NONE)
    charge_id: Mapped[str | None] = mapped_column(String(64))
    # When we last asked the gateway to charge. Set: a charge request may exist under charge_key,
    # so undoing this payment voids that key at the gateway before concluding anything.
    charge_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, onupdate=utc_now)

    booking: Mapped["Booking"] = relationship(back_populates="payment")  # noqa: F821

    @property
    def charge_key(self) -> str:
        return f"charge:{self.booking_id}"

    @staticmethod
    def refund_key(charge_id: str, keep: int = 0) -> str:
        """The key of the refund that leaves `keep` of the charge captured: one per target, so a
        retry replays its refund, and each part cancel (keeping less each time) gets its own."""
        return f"refund:{charge_id}" if keep == 0 else f"refund:{charge_id}:keep:{keep}"

    lifecycle = PAYMENT

    def _moved(self) -> None:
        """The booking shows its payment's status."""
        if self.booking is not None:  # a payment alone (unit tests) has none
            self.booking.touch()

    def start_charge(self) -> None:
        self._move("start_charge")
        self.charge_requested_at = utc_now()

    @property
    def charge_requested(self) -> bool:
        return self.charge_requested_at is not None

    @property
    def free(self) -> bool:
        """Nothing to pay: no gateway call is ever made for it (a show with price 0)."""
        return self.amount == 0

    def capture(self, charge_id: str, *, wanted: bool = True) -> None:
        """The gateway captured this charge; not wanted: the booking moved on, so it goes back."""
        self._move("capture" if wanted else "capture_late")
        self.charge_id = charge_id

    def decline(self) -> None:
        self._move("decline")

    @property
    def may_hold_money(self) -> bool:
        """Money was, or may have been, taken (undoing the booking needs the refund step)."""
        return PAYMENT.allows("start_refund", self.status)

    def start_refund(self) -> None:
        """Money was (or may have been) taken for a booking that no longer wants it."""
        self._move("start_refund")

    def settle_refund(self, captured_any: bool) -> None:
        """The gateway now holds no captured money for this booking."""
        if captured_any:
            self._move("refund_done")
        elif self.status != PaymentStatus.DECLINED:
            # The charge never went through: there was nothing to refund.
            self._move("nothing_taken")

    @property
    def needs_refund_check(self) -> bool:
        return self.status in (PaymentStatus.PENDING, PaymentStatus.PAID, PaymentStatus.REFUNDING)


# The charge id of a free booking's payment: paid without any charge at the gateway.
FREE_CHARGE_ID = "free"


class ChargeOutcome(StrEnum):
    ALREADY_SETTLED = "already_settled"
    PAID = "paid"                # booking paid: its ticket becomes issuable next
    DECLINED = "declined"        # booking failed: its seats go back (caller holds the show lock)
    LATE_CAPTURE = "late_capture"  # money taken for a booking that no longer wants it: refund next


def settle_charge(booking, charge_id: str, captured: bool) -> ChargeOutcome:
    """Record the gateway's answer to our charge on the booking and its payment."""
    payment = booking.payment
    if payment.charge_id == charge_id and payment.status != PaymentStatus.PENDING:
        return ChargeOutcome.ALREADY_SETTLED  # a duplicate delivery of the same step
    if not captured:
        payment.decline()
        if booking.status == BookingStatus.CONFIRMED:
            booking.fail_payment()  # its seats go back
        return ChargeOutcome.DECLINED
    if booking.status == BookingStatus.CONFIRMED:
        payment.capture(charge_id)
        booking.mark_paid()
        return ChargeOutcome.PAID
    payment.capture(charge_id, wanted=False)
    return ChargeOutcome.LATE_CAPTURE


def settle_refund(booking, captured_any: bool) -> None:
    """The gateway holds no captured money for this booking any more but its cancellation fee:
    finish what waited on it."""
    if booking.payment.needs_refund_check:
        booking.payment.settle_refund(captured_any)
        if captured_any:
            booking.refunded_amount = booking.payment.amount - booking.keeps
    if booking.status == BookingStatus.CANCELLING:
        booking.finish_cancel()  # its seats go back
    if booking.payment.status == PaymentStatus.REFUNDED:
        booking.ticket.void()


def settle_part_refund(booking, kept: int) -> None:
    """The gateway holds no more than `kept` of a PAID booking's charge, after part of it was
    cancelled (SPEC §11): the booking shows what was given back. (A part cancelled since asks
    for a refund step of its own, and that one shows the rest.)"""
    refunded = booking.payment.amount - kept
    if refunded > booking.refunded_amount:
        booking.refunded_amount = refunded
        booking.touch()


# -- reconciliation (payments.reconcile) ------------------------------------------------------

class ReconciliationCursor(db.Model):
    """How far the reconciliation job has read the gateway's list of charges (one row)."""
    __tablename__ = "reconciliation_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The id of the last charge read (the listing's cursor); none yet: start from a lookback.
    position: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now,
                                                 server_default=func.now())


class WatchedCharge(db.Model):
    """A capture seen on a booking not settled yet (its charge about to settle, its refund under
    way): the job looks at it again on every run until the booking is final."""
    __tablename__ = "reconciliation_watch"

    charge_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), index=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now,
                                              server_default=func.now())


class ReconciledRefund(db.Model):
    """A refund the reconciliation job made: money captured on a booking that should not hold it,
    that no step had given back. One per charge (the refund key is the charge's)."""
    __tablename__ = "reconciled_refunds"

    charge_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), index=True)
    booking_status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    refund_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now,
                                                 server_default=func.now())


def may_keep(booking_status: str, legit_charge_id: str | None, charge_id: str, charge_amount: int,
             cancellation_fee: int, amount: int) -> int | None:
    """How much of this captured charge a booking may keep, or None while the booking is not
    final (its charge about to settle, its refund under way: not ours to judge).

    Only a booking's own charge (the one its payment recorded) is kept from: by a PAID booking its
    amount and the fees of any part cancelled, by a CANCELLED
    one its cancellation fees (SPEC §11); anything else captured for it, or for a booking in any
    other final state, goes back.
    """
    if booking_status not in FINAL_STATUSES:
        return None
    if legit_charge_id != charge_id:
        return 0
    if booking_status == BookingStatus.PAID:
        return min(amount + cancellation_fee, charge_amount)
    if booking_status == BookingStatus.CANCELLED:
        return min(cancellation_fee, charge_amount)
    return 0
