"""The SPEC §4 invariants, checked against the database and the gateway's own ledger.

One implementation for the admin report (GET /admin/consistency), the metrics and the chaos
harness. Every check is a read: running it never changes anything.

- shows: per show, capacity, remaining, the seats held by bookings (sum of qty where
  seats_held), and whether remaining = capacity - held >= 0 (no oversell).
- money: per booking in a final state, the gateway's captured minus refunded must equal the
  amount plus the cancellation fee when PAID, the cancellation fee when CANCELLED and 0 otherwise
  (SPEC §11); more than that is a double charge (PAID) or a missing refund; a fee out of range
  (negative, above the amount, or on a booking that was not cancelled) is a mismatch too, and so
  is a settled cancel whose refunded_amount is not its amount less its fee.
- tickets: no ISSUED ticket on a booking whose payment is not PAID.
- my page: every booking's read-model entry equals the source of truth (its show's title, venue
  and start time included).
- stuck: bookings not (yet) settled: not in a final state, or with a charge or refund under way;
  lost: ids the caller knows were accepted that the database does not have.
- seats of reserved shows (SPEC §8, invariants 7–9): every live booking holds exactly its seats
  and no seat has a second holder or a holder that is not live; the seat page (show_seat_states)
  shows what the holds say; each category's remaining is its capacity less its taken seats; and
  no customer holds more than the show's max_per_customer.
- waiting rooms (SPEC §9): admissions numbered 1..n in queue order with no waiting entry passed
  over, each room's count of admissions equal to its admitted entries, and every booking let in
  by an admission let in by one of its own customer and show that was admitted.
- the door (SPEC §10): no ticket is CHECKED_IN on a booking that is not PAID (a check-in and a
  cancel both happened), and none without the signed QR it was admitted with.
- cancelled shows (SPEC §11): none of their bookings is live and none of their tickets is valid;
  their money is checked as every booking's (refunded in full: captured - refunded = the fees of
  parts cancelled before).
- partial cancels (SPEC §11): a PAID booking keeps its amount plus the fees of its parts cancelled,
  and shows what was refunded for them; one whose part's refund is due counts as stuck.
- webhooks and mail (SPEC §12): every event has a delivery row for each endpoint that wanted it
  and, if a customer is told of it, a mail row (both written in the event's own transaction).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select, text

from models.bookings import FINAL_STATUSES, Booking, BookingStatus
from models.database import db
from models.mypage import MyPageEntry, show_fields_differ
from models.payments import Payment, PaymentStatus
from models.seats import AVAILABLE, BLOCKED, HELD, SOLD, SeatHold, ShowSeatStates, load_seat_map
from models.shows import Seating, Show, ShowCategory
from models.tickets import Ticket, TicketStatus


def show_report() -> list[dict]:
    """Per show: capacity, remaining, held (by bookings) and whether they agree."""
    held = (select(Booking.show_id, func.coalesce(func.sum(Booking.qty), 0).label("held"))
            .where(Booking.seats_held.is_(True)).group_by(Booking.show_id).subquery())
    blocked = (select(SeatHold.show_id, func.count().label("blocked")).where(SeatHold.booking_id.is_(None))
               .group_by(SeatHold.show_id).subquery())
    rows = db.session.execute(
        select(Show.id, Show.title, Show.capacity, Show.remaining, func.coalesce(held.c.held, 0),
               func.coalesce(blocked.c.blocked, 0))
        .outerjoin(held, held.c.show_id == Show.id).outerjoin(blocked, blocked.c.show_id == Show.id)
        .order_by(Show.created_at, Show.id)
    ).all()
    report = []
    for show_id, title, capacity, remaining, held_qty, blocked_seats in rows:
        held_qty = int(held_qty) + int(blocked_seats)  # a blocked seat is out of sale: not remaining
        report.append({
            "show_id": show_id, "title": title, "capacity": capacity, "remaining": remaining,
            "held": held_qty,
            "agrees": remaining == capacity - held_qty and remaining >= 0,
            "oversold": remaining < 0 or held_qty > capacity,
        })
    return report


# A live reserved booking that does not hold exactly its seats: fewer rows in seat_holds naming it
# for its own seats than its qty, or any row naming it for a seat it does not list.
_BOOKINGS_NOT_HOLDING_THEIR_SEATS = text("""
    SELECT b.id FROM bookings AS b JOIN shows AS s ON s.id = b.show_id AND s.seating = 'reserved'
    WHERE b.seats_held AND b.qty <> (
        SELECT count(*) FROM seat_holds AS h
        WHERE h.booking_id = b.id AND h.show_id = b.show_id AND h.seat_id = ANY(b.seats))
    UNION
    SELECT h.booking_id FROM seat_holds AS h JOIN bookings AS b ON b.id = h.booking_id
    WHERE NOT b.seats_held OR h.show_id <> b.show_id OR NOT h.seat_id = ANY(b.seats)
""")
_OVER_THE_LIMIT = text("""
    SELECT b.show_id, b.customer_id, sum(b.qty) AS held, s.max_per_customer
    FROM bookings AS b JOIN shows AS s ON s.id = b.show_id
    WHERE b.seats_held AND s.max_per_customer IS NOT NULL
    GROUP BY b.show_id, b.customer_id, s.max_per_customer HAVING sum(b.qty) > s.max_per_customer
""")


# A seat of a live booking that is not PAID: HELD, or SOLD while a paid booking's cancel is under way.
_HELD_OR_SOLD = 255


def seat_report() -> dict[str, list]:
    """Invariants 7–9: seats held twice or wrongly, seat pages and categories that disagree with
    the holds, customers over the limit."""
    double_held = [f"booking {booking_id}" for booking_id in db.session.scalars(_BOOKINGS_NOT_HOLDING_THEIR_SEATS)]
    categories = []
    for show in db.session.scalars(select(Show).where(Show.seating == Seating.RESERVED).order_by(Show.id)):
        seat_map = load_seat_map(show.seat_map_id)
        holds = db.session.execute(
            select(SeatHold.seat_id, SeatHold.booking_id, Booking.status)
            .outerjoin(Booking, Booking.id == SeatHold.booking_id).where(SeatHold.show_id == show.id)).all()
        states = db.session.scalar(select(ShowSeatStates.states).where(ShowSeatStates.show_id == show.id)) or b""
        expected = bytearray(seat_map.seat_count)
        taken: dict[str, int] = {}
        for seat_id, booking_id, status in holds:
            seat = seat_map.seat(seat_id)
            if seat is None:
                double_held.append(f"show {show.id}: seat {seat_id} is not on its map")
                continue
            expected[seat.index] = BLOCKED if booking_id is None else SOLD if status == BookingStatus.PAID else _HELD_OR_SOLD
            taken[seat.category] = taken.get(seat.category, 0) + 1
        for index, (want, shown) in enumerate(zip(expected, bytes(states))):
            if (want == AVAILABLE) != (shown == AVAILABLE) or (want in (BLOCKED, SOLD) and shown != want) \
                    or (want == _HELD_OR_SOLD and shown not in (HELD, SOLD)):
                double_held.append(f"show {show.id}: seat {seat_map.seats[index].id} shows {shown}, holds say {want}")
        if len(states) != seat_map.seat_count:
            double_held.append(f"show {show.id}: its seat page has {len(states)} seats, its map {seat_map.seat_count}")
        for category in db.session.scalars(select(ShowCategory).where(ShowCategory.show_id == show.id)):
            if category.capacity - category.remaining != taken.get(category.name, 0):
                categories.append(f"show {show.id} category {category.name}: {category.capacity - category.remaining} "
                                  f"taken by its count, {taken.get(category.name, 0)} by its seats")
    over = [f"show {row.show_id}: customer {row.customer_id} holds {row.held} > {row.max_per_customer}"
            for row in db.session.execute(_OVER_THE_LIMIT)]
    return {"seat_double_held": double_held, "category_mismatches": categories, "limit_exceeded": over}


# Per room, its entries in queue order (place) and in admission order: an admission whose place is
# before the previous admission's is out of order, and a waiting entry placed before the last
# admitted one was passed over.
_QUEUE_OUT_OF_ORDER = text("""
    WITH placed AS (
        SELECT show_id, id, state, admission_seq,
               row_number() OVER (PARTITION BY show_id ORDER BY draw_rank NULLS LAST, arrival_seq) AS place
        FROM queue_entries
    ), admitted AS (
        SELECT show_id, id, place, admission_seq,
               lag(place) OVER (PARTITION BY show_id ORDER BY admission_seq) AS previous_place,
               lag(admission_seq) OVER (PARTITION BY show_id ORDER BY admission_seq) AS previous_seq
        FROM placed WHERE admission_seq IS NOT NULL
    ), last_admitted AS (
        SELECT show_id, max(place) AS place FROM admitted GROUP BY show_id
    )
    SELECT 'show ' || show_id || ': entry ' || id || ' admitted out of queue order' FROM admitted
    WHERE previous_place > place OR admission_seq <> coalesce(previous_seq, 0) + 1
    UNION ALL
    SELECT 'show ' || p.show_id || ': entry ' || p.id || ' still waits behind admitted ones'
    FROM placed AS p JOIN last_admitted AS l ON l.show_id = p.show_id
    WHERE p.state = 'WAITING' AND p.place < l.place
""")
_QUEUE_COUNTS = text("""
    SELECT 'show ' || r.show_id || ': counts ' || r.admitted || ' admissions, its entries ' || count(e.admission_seq)
    FROM waiting_rooms AS r LEFT JOIN queue_entries AS e ON e.show_id = r.show_id
    GROUP BY r.show_id, r.admitted HAVING r.admitted <> count(e.admission_seq)
""")
_ADMISSION_MISUSED = text("""
    SELECT 'show ' || b.show_id || ': booking ' || b.id || ' was let in by entry ' || e.id || ' (' || e.state || ')'
    FROM bookings AS b JOIN queue_entries AS e ON e.id = b.admission_id
    WHERE e.customer_id <> b.customer_id OR e.show_id <> b.show_id OR e.admission_seq IS NULL
""")


def queue_report() -> dict[str, list]:
    """The waiting rooms: admitted once each, in order, and only their own customers booking."""
    return {"queue_out_of_order": list(db.session.scalars(_QUEUE_OUT_OF_ORDER)),
            "queue_admitted_twice": list(db.session.scalars(_QUEUE_COUNTS)),
            "admission_misused": list(db.session.scalars(_ADMISSION_MISUSED))}
def door_report() -> dict[str, list]:
    """Check-ins on bookings that are not PAID, and check-ins of tickets with no signed QR: one
    scan of the tickets, as issued_on_refunded."""
    rows = db.session.execute(
        select(Ticket.booking_id, Booking.status, Payment.status, Ticket.qr.is_(None) | Ticket.tid.is_(None))
        .join(Booking, Booking.id == Ticket.booking_id).join(Payment, Payment.booking_id == Ticket.booking_id)
        .where(Ticket.status == TicketStatus.CHECKED_IN,
               (Booking.status != BookingStatus.PAID) | (Payment.status != PaymentStatus.PAID)
               | Ticket.qr.is_(None) | Ticket.tid.is_(None))).all()
    return {"checked_in_not_paid": [booking_id for booking_id, status, payment, _ in rows
                                    if status != BookingStatus.PAID or payment != PaymentStatus.PAID],
            "checked_in_unsigned": [booking_id for booking_id, _, _, unsigned in rows if unsigned]}


def notify_report() -> dict[str, list]:
    """SPEC §12: an event with no delivery row for a live endpoint that wanted it when it was
    recorded, and an event a customer is mailed about with no mail row. Both rows are written in
    the event's own transaction (services/events.py), so either is a violation at any time, not a
    delivery still under way. (An endpoint counts from a minute after it was made: one committed
    while an event's transaction was under way may rightly have missed it.)"""
    undelivered = db.session.scalars(text("""
        SELECT e.id FROM events e JOIN webhook_endpoints w
          ON e.type = ANY(w.events) AND w.created_at <= e.created_at - interval '1 minute' AND w.deleted_at IS NULL
        WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.endpoint_id = w.id)
        ORDER BY e.id""")).all()
    unmailed = db.session.scalars(text("""
        SELECT e.id FROM events e
        WHERE e.type IN ('booking.paid', 'booking.rejected', 'booking.payment_failed', 'booking.cancelled')
          AND e.booking_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM mails m WHERE m.event_id = e.id)
        ORDER BY e.id""")).all()
    return {"events_not_delivered": list(undelivered), "mails_missing": list(unmailed)}


def expected_balance(status: str, amount: int, cancellation_fee: int = 0) -> int:
    """What the gateway should hold for a booking in a final state (SPEC §4.3 as amended by §11):
    its amount plus its cancellation fee when PAID, its cancellation fee when CANCELLED, 0
    otherwise; so 0 in every state for a free booking (amount 0, never sent to the gateway)."""
    if status == BookingStatus.PAID:
        return amount + cancellation_fee
    if status == BookingStatus.CANCELLED:
        return cancellation_fee
    return 0


def fee_agrees(status: str, charged: int, cancellation_fee: int) -> bool:
    """A cancellation fee is within what was charged for the booking, and only a cancel (whole,
    or of a part of a PAID booking) carries one."""
    if not 0 <= cancellation_fee <= charged:
        return False
    return cancellation_fee == 0 or status in (BookingStatus.CANCELLED, BookingStatus.PAID)


def refund_shown(status: str, payment_status: str, charged: int, amount: int, fee: int, refunded_amount: int) -> bool:
    """A booking shows what its refunds gave back (SPEC §11): a settled cancel of captured money
    all it was charged less its fees; a PAID booking whose parts were cancelled, what was charged
    less its amount and fees. (The gateway's own refunds may be more: a stray extra capture,
    given back too.)"""
    if status == BookingStatus.CANCELLED and payment_status == PaymentStatus.REFUNDED:
        return refunded_amount == charged - fee
    if status == BookingStatus.PAID and charged > 0:
        return refunded_amount == charged - amount - fee
    return True


def booking_money_report(ledger: dict, *, only_problems: bool = False) -> list[dict]:
    """Per booking in a final state: captured - refunded at the gateway vs what it should be.

    `ledger` is the gateway's whole ledger (GatewayClient.ledger()['by_reference']).
    """
    rows = db.session.execute(
        select(Booking.id, Booking.status, Booking.amount, Booking.cancellation_fee, Booking.refunded_amount,
               Payment.status, Payment.amount)
        .join(Payment, Payment.booking_id == Booking.id)
        .where(Booking.status.in_(list(FINAL_STATUSES))).order_by(Booking.seq)
    ).all()
    report = []
    for booking_id, status, amount, fee, refunded_amount, payment_status, charged in rows:
        entry = ledger.get(booking_id) or {"captured": 0, "refunded": 0}
        captured, refunded = int(entry["captured"] or 0), int(entry["refunded"] or 0)
        expected = expected_balance(status, amount, fee)
        row = {"booking_id": booking_id, "status": status, "payment_status": payment_status,
               "amount": amount, "cancellation_fee": fee, "refunded_amount": refunded_amount,
               "captured": captured, "refunded": refunded, "expected": expected,
               "agrees": (captured - refunded == expected and fee_agrees(status, charged, fee)
                          and refund_shown(status, payment_status, charged, amount, fee, refunded_amount))}
        if not only_problems or not row["agrees"]:
            report.append(row)
    return report


def issued_on_refunded() -> list[str]:
    """Bookings with an ISSUED ticket whose payment is not PAID (SPEC §4.2, NFR 1)."""
    return list(db.session.scalars(
        select(Ticket.booking_id).join(Payment, Payment.booking_id == Ticket.booking_id)
        .where(Ticket.status == TicketStatus.ISSUED, Payment.status != PaymentStatus.PAID)
    ))


def mypage_mismatches() -> list[str]:
    """Bookings whose my page entry is missing or differs from the transactional tables."""
    query = (
        select(Booking.id)
        .join(Payment, Payment.booking_id == Booking.id)
        .join(Ticket, (Ticket.booking_id == Booking.id) & Ticket.superseded_at.is_(None))
        .join(Show, Show.id == Booking.show_id)
        .outerjoin(MyPageEntry, MyPageEntry.booking_id == Booking.id)
        .where(
            MyPageEntry.booking_id.is_(None)
            | (MyPageEntry.status != Booking.status)
            | (MyPageEntry.payment_status != Payment.status)
            | (MyPageEntry.ticket_status != Ticket.status)
            | (MyPageEntry.qty != Booking.qty)
            | (MyPageEntry.amount != Booking.amount)
            | (MyPageEntry.cancellation_fee != Booking.cancellation_fee)
            | (MyPageEntry.refunded_amount != Booking.refunded_amount)
            | show_fields_differ()
        )
    )
    return list(db.session.scalars(query))


MONEY_MOVING = (PaymentStatus.PENDING, PaymentStatus.REFUNDING)


def unsettled_bookings() -> list[str]:
    """Bookings not settled yet (stuck, once the system has been quiet for a while): not in a
    final state, or in one with money still moving. An EXPIRED booking whose late charge is
    still to be refunded is final, but the refund step (perhaps backing off, perhaps re-driven
    after a lost message) has work left; its money is checked once that is done."""
    return list(db.session.scalars(
        select(Booking.id).join(Payment, Payment.booking_id == Booking.id)
        .where(Booking.status.not_in(list(FINAL_STATUSES)) | Payment.status.in_(MONEY_MOVING)
               # a PAID booking whose cancelled part is still to be refunded (SPEC §11)
               | ((Booking.status == BookingStatus.PAID)
                  & (Payment.amount > Booking.amount + Booking.cancellation_fee + Booking.refunded_amount)))
        .order_by(Booking.seq)
    ))


def cancelled_show_report() -> dict[str, list]:
    """Cancelled shows (SPEC §11): no booking of one is live (PENDING, CONFIRMED, PAID) once its
    fan-out is done, and no ticket of one could still be used (ISSUABLE, ISSUED, CHECKED_IN: the
    fan-out voids them; a booking that never got paid, rejected or expired, keeps its ticket
    NOT_ISSUABLE, which admits no one)."""
    cancelled = select(Show.id).where(Show.cancelled_at.is_not(None))
    live = list(db.session.scalars(
        select(Booking.id).where(Booking.show_id.in_(cancelled), Booking.status.in_(
            [BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.PAID])).order_by(Booking.seq)))
    tickets = list(db.session.scalars(
        select(Ticket.booking_id).join(Booking, Booking.id == Ticket.booking_id)
        .where(Booking.show_id.in_(cancelled), Ticket.status.in_(
            [TicketStatus.ISSUABLE, TicketStatus.ISSUED, TicketStatus.CHECKED_IN])).order_by(Ticket.booking_id)))
    return {"cancelled_show_live": live, "cancelled_show_tickets_valid": tickets}


def missing_bookings(accepted_ids) -> list[str]:
    """Of the ids a client was told were accepted, those the database does not have (lost)."""
    accepted = list(dict.fromkeys(accepted_ids))
    found = set()
    for start in range(0, len(accepted), 1000):
        chunk = accepted[start:start + 1000]
        found.update(db.session.scalars(select(Booking.id).where(Booking.id.in_(chunk))))
    return [booking_id for booking_id in accepted if booking_id not in found]


@dataclass
class Report:
    bookings: int
    final_states: dict
    shows: list[dict]
    money_problems: list[dict]
    issued_on_refunded: list[str]
    mypage_mismatches: list[str]
    stuck: list[str]
    lost: list[str] = field(default_factory=list)
    seats: dict = field(default_factory=dict)  # seat_report()
    queue: dict = field(default_factory=dict)  # queue_report()
    door: dict = field(default_factory=dict)  # door_report()
    cancelled_shows: dict = field(default_factory=dict)  # cancelled_show_report()
    notify: dict = field(default_factory=dict)  # notify_report()

    @property
    def oversold(self) -> int:
        return sum(1 for show in self.shows if not show["agrees"] or show["oversold"])

    @property
    def double_charges(self) -> int:
        return sum(1 for row in self.money_problems if row["captured"] - row["refunded"] > row["expected"]
                   and row["status"] == BookingStatus.PAID)

    @property
    def missing_refunds(self) -> int:
        return sum(1 for row in self.money_problems if row["status"] != BookingStatus.PAID
                   and row["captured"] - row["refunded"] > row["expected"])

    @property
    def money_mismatches(self) -> int:
        return len(self.money_problems)

    def counts(self) -> dict:
        return {
            "bookings": self.bookings,
            "final_states": self.final_states,
            "lost": len(self.lost),
            "stuck": len(self.stuck),
            "oversold": self.oversold,
            "double_charges": self.double_charges,
            "missing_refunds": self.missing_refunds,
            "money_mismatches": self.money_mismatches,
            "issued_on_refunded": len(self.issued_on_refunded),
            "mypage_mismatches": len(self.mypage_mismatches),
            **{name: len(found) for name, found in self.seats.items()},
            **{name: len(found) for name, found in self.queue.items()},
            **{name: len(found) for name, found in self.door.items()},
            **{name: len(found) for name, found in self.cancelled_shows.items()},
            **{name: len(found) for name, found in self.notify.items()},
        }

    @property
    def consistent(self) -> bool:
        counts = self.counts()
        return all(counts[key] == 0 for key in counts if key not in ("bookings", "final_states"))


def check(gateway, accepted_ids=()) -> Report:
    """Every invariant at once. `gateway` is a GatewayClient (its ledger is the truth about money)."""
    ledger = gateway.ledger()["by_reference"]
    statuses = dict(db.session.execute(
        select(Booking.status, func.count()).group_by(Booking.status)).all())
    report = Report(
        bookings=sum(statuses.values()),
        final_states={status: statuses[status] for status in sorted(statuses) if status in FINAL_STATUSES},
        shows=show_report(),
        money_problems=booking_money_report(ledger, only_problems=True),
        issued_on_refunded=issued_on_refunded(),
        mypage_mismatches=mypage_mismatches(),
        stuck=unsettled_bookings(),
        lost=missing_bookings(accepted_ids) if accepted_ids else [],
        seats=seat_report(),
        queue=queue_report(),
        door=door_report(),
        cancelled_shows=cancelled_show_report(),
        notify=notify_report(),
    )
    # A charge at the gateway for a reference we have no booking for is money taken without a hold.
    known = set(db.session.scalars(select(Booking.id)))
    for reference, entry in ledger.items():
        if reference not in known and int(entry["captured"] or 0) - int(entry["refunded"] or 0) != 0:
            report.money_problems.append({
                "booking_id": reference, "status": "UNKNOWN", "payment_status": None, "amount": 0,
                "cancellation_fee": 0, "refunded_amount": 0,
                "captured": int(entry["captured"] or 0), "refunded": int(entry["refunded"] or 0),
                "expected": 0, "agrees": False})
    return report
