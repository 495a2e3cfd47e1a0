"""The my page: each customer's read model of their bookings (CQRS query side).

Queries read only this table. Each unit of work projects the bookings it changed into it as it
commits (services/unit_of_work.py), and the mypage task repairs the rest; each
row carries the booking version it reflects, so an older projection never overwrites a newer one.
A row also copies its show's title, venue and start time: a change of the show reaches every row
of the show in the same transaction (refresh_show), and the convergence job repairs any row whose
copy differs from the show (stale_booking_ids).
"""
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, select, text
from sqlalchemy.orm import Mapped, mapped_column

from models.bookings import Booking
from models.database import db
from models.shows import Show


class MyPageEntry(db.Model):
    __tablename__ = "mypage_entries"

    booking_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    show_id: Mapped[str] = mapped_column(String(36), index=True)
    show_title: Mapped[str] = mapped_column(String(200))
    venue: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    qty: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    cancellation_fee: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16))
    payment_status: Mapped[str] = mapped_column(String(16))
    ticket_status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)


# One statement for any number of bookings, fed from the transactional tables: no booking is
# loaded. It sees this transaction's own changes, so a step may change bookings and project them
# in one go. Only newer versions are written, or the same version when the show's fields differ
# (a row the convergence job repairs). Rows are written in booking id order, the order
# refresh_show locks them in, so the two never deadlock.
_PROJECT_IDS = text("""
    WITH source AS (
        SELECT b.id, b.customer_id, b.show_id, s.title, s.venue, s.starts_at, b.qty, b.amount,
               b.cancellation_fee, b.refunded_amount, b.status,
               p.status AS payment_status, t.status AS ticket_status, b.created_at, b.updated_at, b.version
        FROM bookings AS b
        JOIN shows AS s ON s.id = b.show_id
        JOIN payments AS p ON p.booking_id = b.id
        JOIN tickets AS t ON t.booking_id = b.id AND t.superseded_at IS NULL
        WHERE b.id = ANY(CAST(:ids AS varchar[]))
    ), written AS (
        INSERT INTO mypage_entries (booking_id, customer_id, show_id, show_title, venue, starts_at, qty,
                                    amount, cancellation_fee, refunded_amount, status, payment_status,
                                    ticket_status, created_at, updated_at, version)
        SELECT * FROM source ORDER BY id
        ON CONFLICT (booking_id) DO UPDATE
        SET show_title = excluded.show_title, venue = excluded.venue, starts_at = excluded.starts_at,
            qty = excluded.qty, amount = excluded.amount, cancellation_fee = excluded.cancellation_fee,
            refunded_amount = excluded.refunded_amount, status = excluded.status, payment_status = excluded.payment_status,
            ticket_status = excluded.ticket_status, updated_at = excluded.updated_at,
            version = excluded.version
        WHERE mypage_entries.version < excluded.version
           OR (mypage_entries.version = excluded.version
               AND (mypage_entries.show_title, mypage_entries.venue, mypage_entries.starts_at)
                   IS DISTINCT FROM (excluded.show_title, excluded.venue, excluded.starts_at))
    )
    SELECT count(*) FROM source
""")


def project_ids(booking_ids: list[str]) -> int:
    """Project these bookings (only newer versions are written). Returns how many were found.

    Pending ORM changes are flushed first, so what is projected is what will be committed."""
    if not booking_ids:
        return 0
    db.session.flush()
    return db.session.execute(_PROJECT_IDS, {"ids": list(booking_ids)}).scalar_one()


# A show's title, venue and start time, copied onto every entry of the show: one statement
# whatever the number of bookings (the show_id index finds them). The show's row is locked by
# the caller (PATCH /shows/{id}); entries are locked in booking id order, as _PROJECT_IDS writes
# them. A projection that read the show before this commit may still write the old copy with a
# newer booking version; stale_booking_ids finds such a row and the convergence job repairs it.
_REFRESH_SHOW = text("""
    WITH target AS (
        SELECT m.booking_id FROM mypage_entries AS m JOIN shows AS s ON s.id = m.show_id
        WHERE m.show_id = :show_id
          AND (m.show_title, m.venue, m.starts_at) IS DISTINCT FROM (s.title, s.venue, s.starts_at)
        ORDER BY m.booking_id
        FOR UPDATE OF m
    )
    UPDATE mypage_entries AS m SET show_title = s.title, venue = s.venue, starts_at = s.starts_at
    FROM target, shows AS s
    WHERE m.booking_id = target.booking_id AND s.id = :show_id
""")

def refresh_show(show_id: str) -> int:
    """Copy the show's title, venue and start time onto its entries that differ; the caller
    commits. Pending ORM changes (the PATCH itself) are flushed first. Returns the rows changed."""
    db.session.flush()
    return db.session.execute(_REFRESH_SHOW, {"show_id": show_id}).rowcount


def show_fields_differ():
    """The SQL condition, over MyPageEntry joined to Show, that an entry's copy of its show is stale."""
    return ((MyPageEntry.show_title != Show.title) | (MyPageEntry.venue != Show.venue)
            | (MyPageEntry.starts_at != Show.starts_at))


def stale_booking_ids(limit: int = 1000) -> list[str]:
    """Bookings whose my page entry is missing, older than the booking, or holds an old copy of
    its show's title, venue or start time (for convergence)."""
    query = (
        select(Booking.id)
        .join(Show, Show.id == Booking.show_id)
        .outerjoin(MyPageEntry, MyPageEntry.booking_id == Booking.id)
        .where((MyPageEntry.version.is_(None)) | (MyPageEntry.version < Booking.version)
               | show_fields_differ())
        .limit(limit)
    )
    return list(db.session.scalars(query))


def customer_entries(customer_id: str, limit: int, offset: int) -> tuple[list[MyPageEntry], int]:
    query = select(MyPageEntry).where(MyPageEntry.customer_id == customer_id)
    total = db.session.scalar(select(db.func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(MyPageEntry.created_at.desc(), MyPageEntry.booking_id).limit(limit).offset(offset)
    ).all()
    return list(rows), total
