"""Bookings: the lifecycle of a customer's request for seats, and the rules for each move.

PENDING --seats reserved--> CONFIRMED --charge captured--> PAID
   |                            |  \\--charge declined--> PAYMENT_FAILED (seats released)
   |                            \\--hold deadline passed--> EXPIRED (seats released)
   \\--not enough seats / sales closed--> REJECTED
PENDING | CONFIRMED | PAID --customer cancels--> CANCELLING --refund done, seats released--> CANCELLED
"""
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Identity, Index, Integer, String,
    UniqueConstraint, select, text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.database import db, new_id, utc_now
from models.errors import Conflict, InvalidInput, NotFound
from models.shows import Show, get_show
from models.statuses import FINAL_STATUSES, BookingStatus, PaymentStatus, TicketStatus  # noqa: F401 (re-exported)


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
    # Arrival number, drawn when the booking is recorded. Bookings in flight together may commit
    # out of seq order; the reservation step decides the visible ones in seq order (see
    # reserve_in_arrival_order below and docs/lifecycle.md, "Arrival order").
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
    def payment_status(self) -> str:
        return self.payment.status

    @property
    def ticket_status(self) -> str:
        return self.ticket.status

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


@dataclass(frozen=True)
class AcceptedBooking:
    """A booking as its POST /bookings answer shows it: what was recorded, nothing later."""
    id: str
    customer_id: str
    show_id: str
    qty: int
    amount: int
    seq: int
    created_at: datetime
    status: str
    payment_status: str
    ticket_status: str

    @property
    def updated_at(self) -> datetime:
        return self.created_at


# One statement, one round trip: the booking, its payment, its ticket and its my page entry,
# priced from the show, only while its sales are open. Its arrival number (seq) comes from the
# column's sequence. ON CONFLICT settles a race between two requests with one Idempotency-Key.
_RECORD = text("""
    WITH show AS (
        SELECT id, title, venue, starts_at, price FROM shows WHERE id = :show_id
    ), booking AS (
        INSERT INTO bookings (id, customer_id, show_id, qty, amount, payment_method, status, seats_held,
                              idempotency_key, request_fingerprint, version, created_at, updated_at)
        SELECT :id, :customer_id, show.id, :qty, show.price * :qty, :payment_method, :pending, false,
               :idempotency_key, :fingerprint, 1, :now, :now
        FROM show WHERE show.starts_at > :now
        ON CONFLICT (customer_id, idempotency_key) DO NOTHING
        RETURNING id, seq, amount
    ), payment AS (
        INSERT INTO payments (booking_id, amount, status, updated_at)
        SELECT id, amount, :payment_status, :now FROM booking
    ), ticket AS (
        INSERT INTO tickets (booking_id, status) SELECT id, :ticket_status FROM booking
    ), entry AS (
        INSERT INTO mypage_entries (booking_id, customer_id, show_id, show_title, venue, starts_at, qty, amount,
                                    status, payment_status, ticket_status, created_at, updated_at, version)
        SELECT booking.id, :customer_id, show.id, show.title, show.venue, show.starts_at, :qty, booking.amount,
               :pending, :payment_status, :ticket_status, :now, :now, 1
        FROM booking, show
    )
    SELECT show.id IS NOT NULL AS show_exists, show.starts_at > :now AS sales_open, booking.seq, booking.amount
    FROM (SELECT 1) AS one LEFT JOIN show ON true LEFT JOIN booking ON true
""")


def record_booking(customer_id: str, show_id: str, qty: int, payment_method: str,
                   idempotency_key: str | None = None) -> tuple[Booking | AcceptedBooking, bool]:
    """Record a PENDING booking with its payment, ticket and my page entry. Returns (booking, created).

    The caller commits. A request repeated with its Idempotency-Key returns the booking it made.
    """
    if not 1 <= qty <= MAX_QTY:
        raise InvalidInput("qty is out of range", {"qty": [f"must be between 1 and {MAX_QTY}"]})
    print_ = fingerprint(show_id, qty, payment_method)
    if idempotency_key:
        existing = find_by_idempotency_key(customer_id, idempotency_key)
        if existing is not None:
            return _replay(existing, print_), False
    booking_id, now = new_id(), utc_now()
    row = db.session.execute(_RECORD, {
        "id": booking_id, "customer_id": customer_id, "show_id": show_id, "qty": qty,
        "payment_method": payment_method, "idempotency_key": idempotency_key, "fingerprint": print_,
        "now": now, "pending": BookingStatus.PENDING.value, "payment_status": PaymentStatus.NONE.value,
        "ticket_status": TicketStatus.NOT_ISSUABLE.value,
    }).one()
    if not row.show_exists:
        raise InvalidInput("show does not exist", {"show_id": ["unknown show"]})
    if not row.sales_open:
        raise Conflict("sales for this show are closed")
    if row.seq is None:  # a concurrent request with the same Idempotency-Key won the race
        existing = find_by_idempotency_key(customer_id, idempotency_key) if idempotency_key else None
        if existing is None:
            raise Conflict("the booking could not be recorded; try again")
        return _replay(existing, print_), False
    return AcceptedBooking(id=booking_id, customer_id=customer_id, show_id=show_id, qty=qty,
                           amount=row.amount, seq=row.seq, created_at=now, status=BookingStatus.PENDING,
                           payment_status=PaymentStatus.NONE, ticket_status=TicketStatus.NOT_ISSUABLE), True


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


def shows_with_pending(created_before: datetime) -> list[str]:
    """Shows with bookings still PENDING that were recorded before the given time."""
    return list(db.session.scalars(
        select(Booking.show_id).where(Booking.status == BookingStatus.PENDING, Booking.created_at < created_before)
        .distinct()))


def lock_bookings(booking_ids: list[str]) -> list[Booking]:
    """Lock these bookings (in id order, so batches never deadlock each other), then read them:
    lock first, read after, for the reason given in get_booking."""
    ids = sorted(set(booking_ids))
    if not ids:
        return []
    db.session.execute(select(Booking.id).where(Booking.id.in_(ids)).order_by(Booking.id).with_for_update())
    return list(db.session.scalars(
        select(Booking).where(Booking.id.in_(ids)).order_by(Booking.id)
        .execution_options(populate_existing=True)).unique())


def get_customer_booking(booking_id: str, customer_id: str | None, *, for_update: bool = False) -> Booking:
    """A booking as its owner sees it. Another customer's booking is reported as missing."""
    booking = get_booking(booking_id, for_update=for_update)
    if customer_id is not None and booking.customer_id != customer_id:
        raise NotFound("booking not found")
    return booking


class Decision(NamedTuple):
    """What a reservation decided for one PENDING booking: CONFIRMED (seats held) or REJECTED."""
    id: str
    status: str
    reason: str | None

    @property
    def holds_seats(self) -> bool:
        return self.status == BookingStatus.CONFIRMED


def decide_in_seq_order(show: Show, pending: list[tuple[str, int]], now: datetime) -> list[Decision]:
    """Decide (booking id, qty) pairs, given in seq order, taking seats from the show as it goes.

    Greedy: a booking is refused only when fewer seats remain than it asks for, so a later
    booking can never take seats an earlier one was refused; a smaller later one may still fit.
    """
    decisions = []
    for booking_id, qty in pending:
        if not show.sales_open(now):
            decisions.append(Decision(booking_id, BookingStatus.REJECTED, "sales for this show are closed"))
        elif show.hold(qty):
            decisions.append(Decision(booking_id, BookingStatus.CONFIRMED, None))
        else:
            decisions.append(Decision(booking_id, BookingStatus.REJECTED, "not enough seats"))
    return decisions


def hold_deadline_from(now: datetime, minutes: float) -> datetime:
    return now + timedelta(minutes=minutes)


# The decisions of one run, applied in one statement: no booking is loaded as an object. Only
# rows still PENDING change (the run holds their locks, so that is all of them).
_APPLY_DECISIONS = text("""
    UPDATE bookings AS b
    SET status = d.status, seats_held = d.held, reason = d.reason,
        hold_deadline = CASE WHEN d.held THEN CAST(:deadline AS timestamptz) END,
        version = b.version + 1, updated_at = :now
    FROM unnest(CAST(:ids AS varchar[]), CAST(:statuses AS varchar[]), CAST(:reasons AS varchar[]),
                CAST(:held AS boolean[])) AS d(id, status, reason, held)
    WHERE b.id = d.id AND b.status = :pending
""")


def reserve_in_arrival_order(show_id: str, hold_minutes: float, limit: int = 500) -> list[Decision]:
    """Decide the show's PENDING bookings that this transaction can see, oldest (lowest seq) first
    (decide_in_seq_order). Returns the decisions, in seq order.

    The show row is locked for the whole decision, so two workers never hand out the same seats.
    A booking whose commit was not yet visible is decided by the next run, which starts after
    it committed; a booking answered before another was even sent is therefore always decided
    no later than that one (docs/lifecycle.md, "Arrival order"). Three statements whatever the
    batch size: lock the show, lock and read the pending bookings, apply the decisions (and the
    show's new seat count, flushed at commit).
    """
    show = get_show(show_id, for_update=True)
    pending = db.session.execute(
        select(Booking.id, Booking.qty)
        .where(Booking.show_id == show_id, Booking.status == BookingStatus.PENDING)
        .order_by(Booking.seq)
        .limit(limit)
        .with_for_update()
    ).all()
    if not pending:
        return []
    now = utc_now()
    decisions = decide_in_seq_order(show, pending, now)
    db.session.execute(_APPLY_DECISIONS, {
        "ids": [d.id for d in decisions], "statuses": [str(d.status) for d in decisions],
        "reasons": [d.reason for d in decisions], "held": [d.holds_seats for d in decisions],
        "deadline": hold_deadline_from(now, hold_minutes), "now": now, "pending": BookingStatus.PENDING.value,
    })
    return decisions
