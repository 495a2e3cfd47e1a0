"""Bookings: a customer's request for seats, its moves (models/lifecycles.py, BOOKING) and the
queries and set-based statements of the steps that move it.

PENDING --seats reserved--> CONFIRMED --charge captured--> PAID
   |                            |  \\--charge declined--> PAYMENT_FAILED (seats released)
   |                            \\--hold deadline passed--> EXPIRED (seats released)
   \\--not enough seats / sales closed--> REJECTED
PENDING --customer cancels--> CANCELLED
CONFIRMED | PAID --customer cancels--> CANCELLING --refund done, seats released--> CANCELLED
PAID --part cancelled--> PAID (fewer seats; the part's refund follows, its ticket is replaced)
any live booking --its show cancelled--> CANCELLED (PENDING) or CANCELLING (refund in full)

Seats change only under the show's row lock, which a unit of work takes before any booking's
(services/unit_of_work.py); a booking gives its seats back in one place, _release_seats.
"""
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Identity, Index, Integer, String,
    UniqueConstraint, func, select, text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, object_session, relationship

from models.database import CHANGED_BOOKINGS, db, new_id, note_changed, note_seats_back, utc_now
from models.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.events import EventType, announce_move, note_events
from models.lifecycles import (  # noqa: F401 (statuses re-exported)
    BOOKING, FINAL_STATUSES, PAYMENT, TICKET, BookingStatus, IllegalMove, MovesByLifecycle, PaymentStatus,
    TicketStatus,
)
from models.seating import RejectReason
from models.seats import SOLD, load_seat_map, note_seat_states, release_seats
from models.shows import Show
from models.tickets import Ticket


MAX_QTY = 10


class Booking(MovesByLifecycle, db.Model):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint(f"qty BETWEEN 1 AND {MAX_QTY}", name="qty_in_range"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("cancellation_fee >= 0", name="fee_not_negative"),
        CheckConstraint("refunded_amount >= 0", name="refunded_not_negative"),
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in BookingStatus) + ")", name="status_known"),
        # Only these states may hold seats; the consistency check sums qty over seats_held.
        CheckConstraint("NOT seats_held OR status IN ('CONFIRMED', 'PAID', 'CANCELLING')", name="holds_only_when_live"),
        UniqueConstraint("customer_id", "idempotency_key", name="uq_bookings_customer_idempotency_key"),
        Index("ix_bookings_show_pending_seq", "show_id", "seq", postgresql_where=text("status = 'PENDING'")),
        Index("ix_bookings_unsettled", "status", "updated_at",
              postgresql_where=text("status IN ('PENDING', 'CONFIRMED', 'CANCELLING')")),
        Index("ix_bookings_show_customer_held", "show_id", "customer_id", postgresql_where=text("seats_held")),
        # A cancelled show's refunds (SPEC §11): its bookings cancelled with it.
        Index("ix_bookings_cancelled_with_show", "show_id", "status", postgresql_where=text("cancelled_with_show")),
        # One admission backs one booking at a time (SPEC §9); one that bought nothing (REJECTED,
        # PAYMENT_FAILED, EXPIRED) frees it for another try while the session lasts.
        Index("uq_bookings_one_per_admission", "admission_id", unique=True, postgresql_where=text(
            "admission_id IS NOT NULL AND status NOT IN ('REJECTED', 'PAYMENT_FAILED', 'EXPIRED')")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Arrival number, drawn when the booking is recorded. Bookings in flight together may commit
    # out of seq order; the reservation step decides the visible ones in seq order (see
    # services/reservation.py and docs/lifecycle.md, "Arrival order").
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    show_id: Mapped[str] = mapped_column(ForeignKey("shows.id"))
    qty: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    payment_method: Mapped[str] = mapped_column(String(64))
    # SPEC §11: what cancelling cost (kept from the capture), decided when the cancel was asked
    # for; and what the refund gave back. Both 0 until something is cancelled.
    cancellation_fee: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16), default=BookingStatus.PENDING)
    seats_held: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(String(200))
    # Why a REJECTED booking was refused (sold_out, seat_taken, no_adjacent_seats, limit_exceeded,
    # sales_closed: models/seating.py RejectReason).
    reject_reason: Mapped[str | None] = mapped_column(String(32))
    # Reserved shows: the category asked for (best available), and the seats: as picked, or as
    # assigned once CONFIRMED. They stay after the seats go back, as the booking's record.
    category: Mapped[str | None] = mapped_column(String(32))
    seats: Mapped[list[str] | None] = mapped_column(ARRAY(String(32)))
    hold_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Cancelled because its show was (SPEC §11): counted in the show's refunds.
    cancelled_with_show: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # The waiting room entry whose Admission-Token let this booking in (shows with a waiting room).
    admission_id: Mapped[str | None] = mapped_column(ForeignKey("queue_entries.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # Bumped by every change the my page shows, so the read model can tell new from stale.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    show: Mapped[Show] = relationship(lazy="joined", innerjoin=True)
    payment: Mapped["Payment"] = relationship(back_populates="booking", uselist=False, lazy="joined", innerjoin=True)  # noqa: F821
    # Its current ticket; those a partial cancel replaced stay in the table, superseded (models/tickets.py).
    ticket: Mapped[Ticket] = relationship(
        primaryjoin="and_(Booking.id == foreign(Ticket.booking_id), Ticket.superseded_at.is_(None))",
        back_populates="booking", uselist=False, lazy="joined", innerjoin=True)

    def __init__(self, **fields):
        super().__init__(**fields)
        # Known before the first flush (a booking just made, or a plain object in the unit tests).
        self.cancellation_fee = self.cancellation_fee or 0
        self.refunded_amount = self.refunded_amount or 0
        self.cancelled_with_show = self.cancelled_with_show or False

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
        """Record that something the customer sees about this booking (its status, its payment's,
        its ticket's) changed. The version goes up once per transaction, and the booking is noted
        for its unit of work to project onto the my page when it commits."""
        self.updated_at = utc_now()
        session = object_session(self)
        if session is None:  # a plain object (the unit tests): every change counts
            self.version += 1
            return
        if self.id not in session.info.get(CHANGED_BOOKINGS, ()):
            self.version += 1
            note_changed(session, [self.id])

    lifecycle = BOOKING

    def _moved(self) -> None:
        self.touch()

    def _announce(self, event: str) -> None:
        announce_move(object_session(self), self.lifecycle.name, event, self.id)

    def _release_seats(self) -> None:
        """Give the booking's seats back to its show (the caller's unit of work holds the show):
        the count, and for a reserved show exactly its seats and their categories' counts."""
        if not self.seats_held:
            return
        self.seats_held = False  # first: the statements below flush the booking's new status with it
        self.show.release(self.qty)
        if self.show.reserved:
            seat_map = load_seat_map(self.show.seat_map_id)
            release_seats(self.show_id, seat_map, self.id, self.seats)
            for category, count in _count_by_category(seat_map, self.seats).items():
                self.show.category(category).give_back(count)

    def mark_paid(self) -> None:
        self._move("pay")
        self.hold_deadline = None
        if self.show.reserved and self.seats_held:
            note_seat_states(object_session(self), self.show_id, load_seat_map(self.show.seat_map_id), self.seats, SOLD)

    def fail_payment(self) -> None:
        self._move("fail_payment")
        self._release_seats()
        self.reason = "payment declined"

    def expire(self) -> None:
        self._move("expire")
        self._release_seats()
        self.reason = "payment did not complete before the hold deadline"

    def request_cancel(self, now: datetime | None = None) -> bool:
        """Accept a customer's cancel. Returns whether downstream work (refund, release) is needed.

        Repeating a cancel is harmless; a booking that never got seats cannot be cancelled, and
        nothing can be cancelled once the show has started. A PAID booking's cancellation fee is
        fixed here, at the time of the request, in the same transaction as its move.
        """
        if self.status in (BookingStatus.CANCELLING, BookingStatus.CANCELLED):
            return False
        if self.status in (BookingStatus.REJECTED, BookingStatus.PAYMENT_FAILED, BookingStatus.EXPIRED):
            raise Conflict(f"a {self.status} booking cannot be cancelled")
        if self.show.started(now):
            raise Conflict("the show has already started")
        if self.status == BookingStatus.PENDING:
            self._move("withdraw")
            self.reason = "cancelled by the customer"
            return False
        if self.status == BookingStatus.PAID:
            # Money was captured: the show's policy in force now decides what the cancel costs
            # (SPEC §11). Unpaid, nothing was taken, so nothing is kept.
            self.cancellation_fee += self.show.cancellation_fee(self.amount, now)  # on the fees of parts before
        self._move("start_cancel")
        self.hold_deadline = None
        note_seats_back(object_session(self), self.show_id)  # its seats come back once the refund is done
        return True

    def finish_cancel(self) -> None:
        self._move("finish_cancel")
        self._release_seats()
        self.reason = "the show was cancelled" if self.cancelled_with_show else "cancelled by the customer"

    def cancel_part(self, qty: int | None = None, seats: list[str] | None = None,
                    now: datetime | None = None) -> int:
        """Give back part of a PAID booking (SPEC §11): `qty` seats of a general admission one, or
        these `seats` of a reserved one. The booking stays PAID with the rest (qty, seats and
        amount describe the rest), the part's fee adds to cancellation_fee, and its ticket is
        replaced by a new one for the rest. Returns what is now owed back (the refund step pays
        it). The caller holds the show's lock, then the booking's.

        Asking for all of the booking is not a part: the caller cancels the whole booking.
        """
        now = now or utc_now()
        self._move("cancel_part")
        self.ticket.ensure_cancellable()
        if self.show.started(now):
            raise Conflict("the show has already started")
        part, part_amount = self._part(qty, seats)
        fee = self.show.cancellation_fee(part_amount, now)
        self._release_part(part, len(part) if part else qty)
        self.qty -= len(part) if part else qty
        self.amount -= part_amount
        self.cancellation_fee += fee
        self.replace_ticket(now)
        self.touch()
        return self.refund_owed

    def _part(self, qty: int | None, seats: list[str] | None) -> tuple[list[str], int]:
        """The seats a partial cancel names (none for general admission) and what they cost."""
        if self.show.reserved:
            if seats is None:
                raise InvalidInput("a reserved booking is partly cancelled by its seats",
                                   {"seats": ["name the seats to give back"]})
            held = set(self.seats or ())
            strangers = [seat for seat in seats if seat not in held]
            if strangers:
                raise InvalidInput("not seats of this booking", {"seats": [f"{seat!r} is not in this booking"
                                                                          for seat in strangers[:MAX_QTY]]})
            if len(seats) >= self.qty:
                raise InvalidInput("that is every seat: cancel without a body", {"seats": ["keep at least one seat"]})
            seat_map = load_seat_map(self.show.seat_map_id)
            price = sum(self.show.category(seat_map.seat(seat).category).price for seat in seats)
            return list(seats), min(price, self.amount)
        if seats is not None:
            raise InvalidInput("a general admission booking is partly cancelled by qty",
                               {"seats": ["not for a general admission show"]})
        if qty is None or not 1 <= qty < self.qty:
            raise InvalidInput("qty is out of range", {"qty": [f"between 1 and {self.qty - 1} (all of it: "
                                                              "cancel without a body)"]})
        return [], self.amount * qty // self.qty

    def _release_part(self, seats: list[str], count: int) -> None:
        self.show.release(count)
        if seats:
            seat_map = load_seat_map(self.show.seat_map_id)
            release_seats(self.show_id, seat_map, self.id, seats)
            for category, given in _count_by_category(seat_map, seats).items():
                self.show.category(category).give_back(given)
            self.seats = [seat for seat in self.seats if seat not in set(seats)]

    def replace_ticket(self, now: datetime) -> None:
        """Void the current ticket and make a new one, issuable, for what the booking is now."""
        old, new = self.ticket, Ticket(booking_id=self.id, status=TICKET.initial)
        old.supersede(now)
        session = object_session(self)
        if session is None:  # a plain object (the unit tests)
            self.ticket = new
        else:
            session.flush()  # the old one superseded first: one current ticket per booking
            session.add(new)
            session.flush()
            session.expire(self, ["ticket"])
        self.ticket.make_issuable()

    @property
    def refund_owed(self) -> int:
        """What the gateway still holds of a PAID booking's charge beyond what it keeps: the amount
        of its seats and its fees (what part cancels gave back, once their refund went through)."""
        if self.status != BookingStatus.PAID or self.payment.free:
            return 0
        return max(0, self.payment.amount - self.refunded_amount - self.amount - self.cancellation_fee)

    @property
    def keeps(self) -> int:
        """What of its captured charge a booking in this state keeps (SPEC §11): its amount and fees
        when PAID, its fees when cancelling or cancelled."""
        if self.status == BookingStatus.PAID:
            return self.amount + self.cancellation_fee
        return self.cancellation_fee

    def cancel_with_show(self) -> bool:
        """Its show was cancelled: cancelled in full, no fee (SPEC §11). Returns whether a refund
        step is needed (a PENDING booking held nothing and is simply withdrawn). A booking already
        cancelling or settled is left as it is."""
        if self.status not in (BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.PAID):
            return False
        self.cancelled_with_show = True
        self.ticket.void_with_show()
        if self.status == BookingStatus.PENDING:
            self._move("withdraw")
            self.reason = "the show was cancelled"
            return False
        self._move("start_cancel")
        self.hold_deadline = None
        return True


def _count_by_category(seat_map, seat_ids) -> dict[str, int]:
    counts: dict[str, int] = {}
    for seat_id in seat_ids:
        category = seat_map.seat(seat_id).category
        counts[category] = counts.get(category, 0) + 1
    return counts


def fingerprint(show_id: str, qty: int, payment_method: str, category: str | None = None,
                seats: list[str] | None = None) -> str:
    request = {"show_id": show_id, "qty": qty, "payment_method": payment_method}
    if category is not None or seats is not None:  # general bookings keep the fingerprints they had
        request.update(category=category, seats=seats)
    body = json.dumps(request, sort_keys=True)
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
    category: str | None = None
    seats: list[str] | None = None
    reject_reason: str | None = None

    @property
    def updated_at(self) -> datetime:
        return self.created_at


# One statement, one round trip: the booking, its payment, its ticket and its my page entry,
# priced from the show (a reserved show's amount is given: the sum of its seats' prices), only
# while its sales are open and for the form of booking its seating takes. Its arrival number (seq)
# comes from the column's sequence. ON CONFLICT settles a race between two requests with one
# Idempotency-Key.
_RECORD = text("""
    WITH show AS (
        SELECT id, title, venue, starts_at, price, seating, on_sale_at, cancelled_at,
               EXISTS (SELECT 1 FROM waiting_rooms WHERE waiting_rooms.show_id = shows.id) AS queued
        FROM shows WHERE id = :show_id
    ), booking AS (
        INSERT INTO bookings (id, customer_id, show_id, qty, amount, payment_method, status, seats_held,
                              idempotency_key, request_fingerprint, version, created_at, updated_at,
                              category, seats, admission_id)
        SELECT :id, :customer_id, show.id, :qty, coalesce(CAST(:amount AS bigint), show.price * :qty),
               :payment_method, :pending, false, :idempotency_key, :fingerprint, 1, :now, :now,
               :category, CAST(:seats AS varchar[]), CASE WHEN show.queued THEN CAST(:admission_id AS varchar) END
        FROM show
        WHERE show.starts_at > :now AND show.cancelled_at IS NULL
          AND (show.on_sale_at IS NULL OR show.on_sale_at <= :now)
          AND show.seating = :seating AND (NOT show.queued OR :admission_id IS NOT NULL)
        -- a repeated Idempotency-Key, or an admission that already backs a live booking
        ON CONFLICT DO NOTHING
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
    SELECT show.id IS NOT NULL AS show_exists, show.starts_at > :now AS sales_open,
           show.on_sale_at IS NULL OR show.on_sale_at <= :now AS on_sale, show.cancelled_at IS NOT NULL AS cancelled,
           show.seating, show.queued,
           booking.seq, booking.amount
    FROM (SELECT 1) AS one LEFT JOIN show ON true LEFT JOIN booking ON true
""")


def record_booking(customer_id: str, show_id: str, qty: int, payment_method: str,
                   idempotency_key: str | None = None, *, category: str | None = None,
                   seats: list[str] | None = None, amount: int | None = None,
                   admission_id: str | None = None) -> tuple[Booking | AcceptedBooking, bool]:
    """Record a booking, its payment and its ticket, each in its lifecycle's initial status, and its
    my page entry. Returns (booking, created).

    A general booking is a qty; a reserved one is a pick (seats) or best available (qty and
    category), with its amount given. The caller commits. A request repeated with its
    Idempotency-Key returns the booking it made. A show with a waiting room needs admission_id,
    the entry of an Admission-Token already verified for this customer and show.
    """
    if not 1 <= qty <= MAX_QTY:
        raise InvalidInput("qty is out of range", {"qty": [f"must be between 1 and {MAX_QTY}"]})
    reserved = category is not None or seats is not None
    print_ = fingerprint(show_id, qty, payment_method, category, seats)
    if idempotency_key:
        existing = find_by_idempotency_key(customer_id, idempotency_key)
        if existing is not None:
            return _replay(existing, print_), False
    booking_id, now = new_id(), utc_now()
    row = db.session.execute(_RECORD, {
        "id": booking_id, "customer_id": customer_id, "show_id": show_id, "qty": qty,
        "payment_method": payment_method, "idempotency_key": idempotency_key, "fingerprint": print_,
        "now": now, "pending": BOOKING.initial.value, "payment_status": PAYMENT.initial.value,
        "ticket_status": TICKET.initial.value, "amount": amount, "category": category, "seats": seats,
        "seating": "reserved" if reserved else "general", "admission_id": admission_id,
    }).one()
    if not row.show_exists:
        raise InvalidInput("show does not exist", {"show_id": ["unknown show"]})
    if row.cancelled:
        raise Conflict("the show was cancelled")
    if not row.sales_open:
        raise Conflict("sales for this show are closed")
    if not row.on_sale:
        raise Conflict("sales for this show have not opened yet")
    if row.seating != ("reserved" if reserved else "general"):
        if reserved:
            raise InvalidInput("this show has general admission: book a qty",
                               {"seats" if seats is not None else "category": ["not for a general admission show"]})
        raise InvalidInput("this show has reserved seating: book seats, or a qty in a category",
                           {"category": ["required for a reserved show (or pick seats)"]})
    if row.queued and admission_id is None:
        raise Forbidden("this show has a waiting room: book with the Admission-Token of your turn")
    if row.seq is None:  # a concurrent request with the same Idempotency-Key won the race
        existing = find_by_idempotency_key(customer_id, idempotency_key) if idempotency_key else None
        if existing is None:
            if admission_id is not None:
                raise Conflict("this admission already has a booking: one booking per turn in the waiting room")
            raise Conflict("the booking could not be recorded; try again")
        return _replay(existing, print_), False
    return AcceptedBooking(id=booking_id, customer_id=customer_id, show_id=show_id, qty=qty,
                           amount=row.amount, seq=row.seq, created_at=now, status=BOOKING.initial,
                           payment_status=PAYMENT.initial, ticket_status=TICKET.initial,
                           category=category, seats=seats), True


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


def read_bookings(booking_ids: list[str]) -> list[Booking]:
    """Read these bookings (no lock), with their show, payment and ticket, in id order."""
    ids = sorted(set(booking_ids))
    if not ids:
        return []
    return list(db.session.scalars(select(Booking).where(Booking.id.in_(ids)).order_by(Booking.id)).unique())


def get_customer_booking(booking_id: str, customer_id: str | None, *, for_update: bool = False) -> Booking:
    """A booking as its owner sees it. Another customer's booking is reported as missing."""
    booking = get_booking(booking_id, for_update=for_update)
    if customer_id is not None and booking.customer_id != customer_id:
        raise NotFound("booking not found")
    return booking


class Decision(NamedTuple):
    """What a reservation decided for one PENDING booking: CONFIRMED (seats held: for a reserved
    show, these seats) or REJECTED, with a reason for people and a reject_reason for programs."""
    id: str
    status: str
    reason: str | None
    reject_reason: str | None = None
    seats: tuple[str, ...] | None = None

    @property
    def holds_seats(self) -> bool:
        return self.status == BookingStatus.CONFIRMED


# What a rejection says to a person, by its reject_reason (models/seating.py RejectReason).
REJECTION_TEXT = {
    RejectReason.SALES_CLOSED: "sales for this show are closed",
    RejectReason.SOLD_OUT: "not enough seats",
    RejectReason.LIMIT_EXCEEDED: "over the show's limit of seats per customer",
    RejectReason.SEAT_TAKEN: "a chosen seat is no longer available",
    RejectReason.NO_ADJACENT_SEATS: "no block of adjacent seats that large in the category",
}


def rejected(booking_id: str, reject_reason: RejectReason) -> Decision:
    return Decision(booking_id, BookingStatus.REJECTED, REJECTION_TEXT[reject_reason], reject_reason)


class Pending(NamedTuple):
    """A PENDING booking as the reservation step reads it."""
    id: str
    qty: int
    customer_id: str | None = None
    category: str | None = None
    seats: list[str] | None = None


def reserve_in_seq_order(show: Show, pending: list[tuple], now: datetime,
                         held_by_customer: dict[str, int] | None = None) -> list[Decision]:
    """Decide the PENDING bookings of a general admission show (Pending, or (id, qty) pairs), given
    in seq order, taking seats from the show as it goes.

    Greedy: a booking is refused only when fewer seats remain than it asks for, so a later
    booking can never take seats an earlier one was refused; a smaller later one may still fit.
    The show's max_per_customer counts the seats each customer already holds (held_by_customer)
    and those confirmed earlier in the same run.
    """
    held = dict(held_by_customer or {})
    limit = show.max_per_customer
    decisions = []
    for row in pending:
        booking = Pending(*row)
        if not show.sales_open(now):
            decisions.append(rejected(booking.id, RejectReason.SALES_CLOSED))
        elif limit is not None and held.get(booking.customer_id, 0) + booking.qty > limit:
            decisions.append(rejected(booking.id, RejectReason.LIMIT_EXCEEDED))
        elif show.hold(booking.qty):
            held[booking.customer_id] = held.get(booking.customer_id, 0) + booking.qty
            decisions.append(Decision(booking.id, BookingStatus.CONFIRMED, None))
        else:
            decisions.append(rejected(booking.id, RejectReason.SOLD_OUT))
    return decisions


def hold_deadline_from(now: datetime, minutes: float) -> datetime:
    return now + timedelta(minutes=minutes)


def lock_pending(show_id: str, limit: int) -> list[Pending]:
    """Lock and read the show's PENDING bookings, oldest (lowest seq) first.

    Called under the show's lock (so two runs never decide the same bookings). A booking whose
    commit is not visible yet is decided by the next run, which starts after it committed; a
    booking answered before another was even sent is therefore always decided no later than that
    one (docs/lifecycle.md, "Arrival order").
    """
    return [Pending(*row) for row in db.session.execute(
        select(Booking.id, Booking.qty, Booking.customer_id, Booking.category, Booking.seats)
        .where(Booking.show_id == show_id, Booking.status == BookingStatus.PENDING)
        .order_by(Booking.seq)
        .limit(limit)
        .with_for_update()
    )]


# Holds whose outcome is still open: a payment may yet be declined or run out (CONFIRMED), a
# cancel's refund is under way (CANCELLING). Their seats may come back without anyone asking.
OPEN_HOLDS = (BookingStatus.CONFIRMED, BookingStatus.CANCELLING)


def sold_out_for_good(show: Show) -> set[str | None]:
    """What of the show (its row locked and read afresh) has no seat left and no open hold that
    could give one back: {None} for a general admission show, else the names of such categories.
    A PAID booking's seats come back only by a cancel, which clears the fact (services/sold_out.py)."""
    if not show.sales_open():
        return set()
    if not show.reserved:
        if show.remaining > 0:
            return set()
        open_hold = db.session.scalar(select(Booking.id).where(
            Booking.show_id == show.id, Booking.seats_held.is_(True), Booking.status.in_(OPEN_HOLDS)).limit(1))
        return set() if open_hold else {None}
    empty = {category.name for category in show.categories if category.remaining == 0}
    if not empty:
        return set()
    seat_map = load_seat_map(show.seat_map_id)
    for seat_ids in db.session.scalars(select(Booking.seats).where(
            Booking.show_id == show.id, Booking.seats_held.is_(True), Booking.status.in_(OPEN_HOLDS))):
        empty -= set(_count_by_category(seat_map, seat_ids or ()))
        if not empty:
            break
    return empty


def seats_held_by(show_id: str, customer_ids) -> dict[str, int]:
    """Seats each of these customers holds in live bookings of the show (for max_per_customer)."""
    customer_ids = sorted(set(customer_ids))
    if not customer_ids:
        return {}
    return {customer: int(total) for customer, total in db.session.execute(
        select(Booking.customer_id, func.sum(Booking.qty))
        .where(Booking.show_id == show_id, Booking.customer_id.in_(customer_ids), Booking.seats_held.is_(True))
        .group_by(Booking.customer_id))}


# The decisions of one run, applied in one statement: no booking is loaded as an object. A row
# changes only by a (from, to) pair the booking lifecycle allows for the reservation's events
# (confirm, reject); the caller compares the count with the decisions and refuses the rest. A
# reserved booking's seats come as one comma-joined string each (seat ids hold no comma).
_APPLY_RESERVATIONS = text("""
    UPDATE bookings AS b
    SET status = d.status, seats_held = d.held, reason = d.reason, reject_reason = d.reject_reason,
        seats = coalesce(string_to_array(d.seats, ','), b.seats),
        hold_deadline = CASE WHEN d.held THEN CAST(:deadline AS timestamptz) END,
        version = b.version + 1, updated_at = :now
    FROM unnest(CAST(:ids AS varchar[]), CAST(:statuses AS varchar[]), CAST(:reasons AS varchar[]),
                CAST(:held AS boolean[]), CAST(:reject_reasons AS varchar[]), CAST(:seats AS varchar[]))
         AS d(id, status, reason, held, reject_reason, seats)
    WHERE b.id = d.id
      AND (b.status, d.status) IN (SELECT * FROM unnest(CAST(:from AS varchar[]), CAST(:to AS varchar[])))
""")
_RESERVATION_MOVES = BOOKING.pairs("confirm", "reject")


def apply_reservations(decisions: list[Decision], deadline: datetime, now: datetime) -> None:
    """Apply a run's decisions to their (locked) bookings in one statement. IllegalMove, and
    nothing applied once the caller rolls back, if any booking is not where its decision may
    start (a reservation can only decide PENDING bookings)."""
    if not decisions:
        return
    moved = db.session.execute(_APPLY_RESERVATIONS, {
        "ids": [d.id for d in decisions], "statuses": [str(d.status) for d in decisions],
        "reasons": [d.reason for d in decisions], "held": [d.holds_seats for d in decisions],
        "reject_reasons": [d.reject_reason and str(d.reject_reason) for d in decisions],
        "seats": [",".join(d.seats) if d.seats else None for d in decisions],
        "deadline": deadline, "now": now,
        "from": [source for source, _ in _RESERVATION_MOVES], "to": [target for _, target in _RESERVATION_MOVES],
    }).rowcount
    if moved != len(decisions):
        raise IllegalMove(f"a reservation may only decide PENDING bookings: {len(decisions) - moved} of "
                          f"{len(decisions)} were not")
    note_changed(db.session, [d.id for d in decisions])
    note_events(db.session, [(d.id, EventType.BOOKING_CONFIRMED if d.holds_seats else EventType.BOOKING_REJECTED)
                             for d in decisions])
