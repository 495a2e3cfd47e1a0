"""The SPEC §4 invariants, checked against the database and the gateway's own ledger.

One implementation for the admin report (GET /admin/consistency), the metrics and the chaos
harness. Every check is a read: running it never changes anything.

- shows: per show, capacity, remaining, the seats held by bookings (sum of qty where
  seats_held), and whether remaining = capacity - held >= 0 (no oversell).
- money: per booking in a final state, the gateway's captured minus refunded must equal the
  amount when PAID and 0 otherwise; more than the amount is a double charge, money left on a
  booking that is not PAID is a missing refund.
- tickets: no ISSUED ticket on a booking whose payment is not PAID.
- my page: every booking's read-model entry equals the source of truth (its show's title, venue
  and start time included).
- stuck: bookings not (yet) settled: not in a final state, or with a charge or refund under way;
  lost: ids the caller knows were accepted that the database does not have.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from models.bookings import FINAL_STATUSES, Booking, BookingStatus
from models.database import db
from models.mypage import MyPageEntry, show_fields_differ
from models.payments import Payment, PaymentStatus
from models.shows import Show
from models.tickets import Ticket, TicketStatus


def show_report() -> list[dict]:
    """Per show: capacity, remaining, held (by bookings) and whether they agree."""
    held = (select(Booking.show_id, func.coalesce(func.sum(Booking.qty), 0).label("held"))
            .where(Booking.seats_held.is_(True)).group_by(Booking.show_id).subquery())
    rows = db.session.execute(
        select(Show.id, Show.title, Show.capacity, Show.remaining, func.coalesce(held.c.held, 0))
        .outerjoin(held, held.c.show_id == Show.id).order_by(Show.created_at, Show.id)
    ).all()
    report = []
    for show_id, title, capacity, remaining, held_qty in rows:
        held_qty = int(held_qty)
        report.append({
            "show_id": show_id, "title": title, "capacity": capacity, "remaining": remaining,
            "held": held_qty,
            "agrees": remaining == capacity - held_qty and remaining >= 0,
            "oversold": remaining < 0 or held_qty > capacity,
        })
    return report


def expected_balance(status: str, amount: int) -> int:
    """What the gateway should hold for a booking in a final state (SPEC §4.3): its amount when
    PAID, 0 otherwise; so 0 in every state for a free booking (amount 0, never sent to the gateway)."""
    return amount if status == BookingStatus.PAID else 0


def booking_money_report(ledger: dict, *, only_problems: bool = False) -> list[dict]:
    """Per booking in a final state: captured - refunded at the gateway vs what it should be.

    `ledger` is the gateway's whole ledger (GatewayClient.ledger()['by_reference']).
    """
    rows = db.session.execute(
        select(Booking.id, Booking.status, Booking.amount, Payment.status)
        .join(Payment, Payment.booking_id == Booking.id)
        .where(Booking.status.in_(list(FINAL_STATUSES))).order_by(Booking.seq)
    ).all()
    report = []
    for booking_id, status, amount, payment_status in rows:
        entry = ledger.get(booking_id) or {"captured": 0, "refunded": 0}
        balance = int(entry["captured"] or 0) - int(entry["refunded"] or 0)
        expected = expected_balance(status, amount)
        row = {"booking_id": booking_id, "status": status, "payment_status": payment_status,
               "amount": amount, "captured": int(entry["captured"] or 0),
               "refunded": int(entry["refunded"] or 0), "expected": expected,
               "agrees": balance == expected}
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
        .join(Ticket, Ticket.booking_id == Booking.id)
        .join(Show, Show.id == Booking.show_id)
        .outerjoin(MyPageEntry, MyPageEntry.booking_id == Booking.id)
        .where(
            MyPageEntry.booking_id.is_(None)
            | (MyPageEntry.status != Booking.status)
            | (MyPageEntry.payment_status != Payment.status)
            | (MyPageEntry.ticket_status != Ticket.status)
            | (MyPageEntry.qty != Booking.qty)
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
        .where(Booking.status.not_in(list(FINAL_STATUSES)) | Payment.status.in_(MONEY_MOVING))
        .order_by(Booking.seq)
    ))


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
                   and row["captured"] - row["refunded"] > 0)

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
        }

    @property
    def consistent(self) -> bool:
        counts = self.counts()
        return all(counts[key] == 0 for key in (
            "lost", "stuck", "oversold", "double_charges", "missing_refunds", "money_mismatches",
            "issued_on_refunded", "mypage_mismatches"))


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
    )
    # A charge at the gateway for a reference we have no booking for is money taken without a hold.
    known = set(db.session.scalars(select(Booking.id)))
    for reference, entry in ledger.items():
        if reference not in known and int(entry["captured"] or 0) - int(entry["refunded"] or 0) != 0:
            report.money_problems.append({
                "booking_id": reference, "status": "UNKNOWN", "payment_status": None, "amount": 0,
                "captured": int(entry["captured"] or 0), "refunded": int(entry["refunded"] or 0),
                "expected": 0, "agrees": False})
    return report
