"""Bookings: the lifecycle of a customer's request for seats, and the rules for each move.

PENDING --seats reserved--> CONFIRMED --charge captured--> PAID
   |                            |  \\--charge declined--> PAYMENT_FAILED (seats released)
   |                            \\--hold deadline passed--> EXPIRED (seats released)
   \\--not enough seats / sales closed--> REJECTED
PENDING | CONFIRMED | PAID --customer cancels--> CANCELLING --refund done, seats released--> CANCELLED
"""
import hashlib
import json
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Identity, Index, Integer, String,
    UniqueConstraint, select, text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.orm.attributes import set_committed_value

from models.database import db, new_id, utc_now
from models.errors import Conflict, InvalidInput, NotFound
from models.shows import Show


class BookingStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    PAID = "PAID"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"


FINAL_STATUSES = frozenset({
    BookingStatus.PAID, BookingStatus.REJECTED, BookingStatus.PAYMENT_FAILED,
    BookingStatus.EXPIRED, BookingStatus.CANCELLED,
})
MAX_QTY = 10


class Booking(db.Model):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint(f"qty BETWEEN 1 AND {MAX_QTY}", name="qty_in_range"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in BookingStatus) + ")", name="status_known"),
        # Only these states may hold seats; the consistency check sums qty over seats_held.
        CheckConstraint("NOT seats_held OR status IN ('CONFIRMED', 'PAID', 'CANCELLING')", name="holds_only_when_live"),
        UniqueConstraint("customer_id", "idempotency_key", name="uq_bookings_customer_idempotency_key"),
        Index("ix_bookings_show_pending_seq", "show_id", "seq", postgresql_where=text("status = 'PENDING'")),
        Index("ix_bookings_unsettled", "status", "updated_at",
              postgresql_where=text("status IN ('PENDING', 'CONFIRMED', 'CANCELLING')")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Arrival order. Drawn under a per-show lock held until commit (see take_arrival_turn),
    # so seq order is also commit order and the reservation step can trust it.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    show_id: Mapped[str] = mapped_column(ForeignKey("shows.id"))
    qty: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    payment_method: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=BookingStatus.PENDING)
    seats_held: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(String(200))
    hold_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # Bumped by every change the my page shows, so the read model can tell new from stale.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    show: Mapped[Show] = relationship(lazy="joined", innerjoin=True)
    payment: Mapped["Payment"] = relationship(back_populates="booking", uselist=False, lazy="joined", innerjoin=True)  # noqa: F821
    ticket: Mapped["Ticket"] = relationship(back_populates="booking", uselist=False, lazy="joined", innerjoin=True)  # noqa: F821

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def touch(self) -> None:
        """Record that something the customer sees about this booking changed."""
        self.version += 1
        self.updated_at = utc_now()

    def _move(self, allowed_from: set[str], to: BookingStatus) -> None:
        if self.status not in allowed_from:
            raise Conflict(f"booking is {self.status}, cannot become {to}")
        self.status = to
        self.touch()

    def confirm(self, hold_deadline: datetime) -> None:
        self._move({BookingStatus.PENDING}, BookingStatus.CONFIRMED)
        self.seats_held = True
        self.hold_deadline = hold_deadline

    def reject(self, reason: str) -> None:
        self._move({BookingStatus.PENDING}, BookingStatus.REJECTED)
        self.reason = reason

    def mark_paid(self) -> None:
        self._move({BookingStatus.CONFIRMED}, BookingStatus.PAID)
        self.hold_deadline = None

    def fail_payment(self) -> None:
        self._move({BookingStatus.CONFIRMED}, BookingStatus.PAYMENT_FAILED)
        self.seats_held = False
        self.reason = "payment declined"

    def expire(self) -> None:
        self._move({BookingStatus.CONFIRMED}, BookingStatus.EXPIRED)
        self.seats_held = False
        self.reason = "payment did not complete before the hold deadline"

    def request_cancel(self, now: datetime | None = None) -> bool:
        """Accept a customer's cancel. Returns whether downstream work (refund, release) is needed.

        Repeating a cancel is harmless; a booking that never got seats cannot be cancelled, and
        nothing can be cancelled once the show has started.
        """
        if self.status in (BookingStatus.CANCELLING, BookingStatus.CANCELLED):
            return False
        if self.status in (BookingStatus.REJECTED, BookingStatus.PAYMENT_FAILED, BookingStatus.EXPIRED):
            raise Conflict(f"a {self.status} booking cannot be cancelled")
        if not self.show.sales_open(now):
            raise Conflict("the show has already started")
        if self.status == BookingStatus.PENDING:
            self._move({BookingStatus.PENDING}, BookingStatus.CANCELLED)
            self.reason = "cancelled by the customer"
            return False
        self._move({BookingStatus.CONFIRMED, BookingStatus.PAID}, BookingStatus.CANCELLING)
        self.hold_deadline = None
        return True

    def finish_cancel(self) -> None:
        self._move({BookingStatus.CANCELLING}, BookingStatus.CANCELLED)
        self.seats_held = False
        self.reason = "cancelled by the customer"


def fingerprint(show_id: str, qty: int, payment_method: str) -> str:
    body = json.dumps({"show_id": show_id, "qty": qty, "payment_method": payment_method}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def find_by_idempotency_key(customer_id: str, key: str) -> Booking | None:
    return db.session.scalar(
        select(Booking).where(Booking.customer_id == customer_id, Booking.idempotency_key == key)
    )


def _replay(existing: Booking, print_: str) -> Booking:
    if existing.request_fingerprint != print_:
        raise InvalidInput("this Idempotency-Key was already used with a different request",
                           {"Idempotency-Key": ["reused with a different body"]})
    return existing


def record_booking(customer_id: str, show_id: str, qty: int, payment_method: str,
                   idempotency_key: str | None = None) -> tuple[Booking, bool]:
    """Record a PENDING booking with its payment and ticket. Returns (booking, created).

    The caller must call take_arrival_turn() as the last statement before committing.
    """
    from models.payments import Payment
    from models.tickets import Ticket

    if not 1 <= qty <= MAX_QTY:
        raise InvalidInput("qty is out of range", {"qty": [f"must be between 1 and {MAX_QTY}"]})
    print_ = fingerprint(show_id, qty, payment_method)
    if idempotency_key:
        existing = find_by_idempotency_key(customer_id, idempotency_key)
        if existing is not None:
            return _replay(existing, print_), False
    show = db.session.get(Show, show_id)
    if show is None:
        raise InvalidInput("show does not exist", {"show_id": ["unknown show"]})
    if not show.sales_open():
        raise Conflict("sales for this show are closed")
    booking = Booking(customer_id=customer_id, show_id=show_id, qty=qty, amount=show.price * qty,
                      payment_method=payment_method, idempotency_key=idempotency_key,
                      request_fingerprint=print_, status=BookingStatus.PENDING, seats_held=False, version=1)
    booking.payment = Payment(amount=booking.amount)
    booking.ticket = Ticket()
    db.session.add(booking)
    try:
        db.session.flush()
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race.
        db.session.rollback()
        existing = find_by_idempotency_key(customer_id, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _replay(existing, print_), False
    return booking, True


_TAKE_TURN = text("""
    WITH turn AS (SELECT pg_advisory_xact_lock(hashtextextended(:show_id, 0)))
    UPDATE bookings SET seq = nextval(pg_get_serial_sequence('bookings', 'seq'))
    FROM turn WHERE bookings.id = :booking_id
    RETURNING bookings.seq
""")


def take_arrival_turn(booking: Booking) -> int:
    """Give a new booking its arrival number, as the last statement before its commit.

    Bookings for one show must become visible in arrival (seq) order, or the reservation step
    could decide a later booking before an earlier one it cannot see yet. So the number is drawn
    under a per-show transaction lock, held from here to the commit: one statement and the
    commit, instead of the whole request, which keeps bookings for one show flowing.
    """
    db.session.flush()
    seq = db.session.execute(_TAKE_TURN, {"show_id": booking.show_id, "booking_id": booking.id}).scalar_one()
    set_committed_value(booking, "seq", seq)
    return seq


def get_booking(booking_id: str, *, for_update: bool = False) -> Booking:
    """Load a booking with its show, payment and ticket; with for_update, under its row lock.

    The lock is taken by its own statement first, and the booking is read by a second one. In
    READ COMMITTED a statement that waited for a row lock re-reads only the locked row, not the
    rows joined to it; reading afterwards, with a fresh snapshot, sees the payment and ticket as
    the previous lock holder committed them (a cancel's VOID ticket, say).
    """
    query = select(Booking).where(Booking.id == booking_id)
    if for_update:
        db.session.execute(select(Booking.id).where(Booking.id == booking_id).with_for_update())
        query = query.execution_options(populate_existing=True)
    booking = db.session.scalar(query)
    if booking is None:
        raise NotFound("booking not found")
    return booking


def get_customer_booking(booking_id: str, customer_id: str | None, *, for_update: bool = False) -> Booking:
    """A booking as its owner sees it. Another customer's booking is reported as missing."""
    booking = get_booking(booking_id, for_update=for_update)
    if customer_id is not None and booking.customer_id != customer_id:
        raise NotFound("booking not found")
    return booking


def hold_deadline_from(now: datetime, minutes: float) -> datetime:
    return now + timedelta(minutes=minutes)
