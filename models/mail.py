"""Customer mail (SPEC §12): one mail per event that a customer is told of, keyed by the event.

The row is written in the transaction that wrote its event (`record_mails`), so a mail can be
neither lost (the row outlives an SMTP server that is down; its `next_attempt_at` is a durable
timer) nor sent for a change that rolled back. Its primary key is the event id, so an event has
at most one mail; the message's Message-ID is derived from the event id too, so that the rare
resend (a worker that died after the SMTP server took the message, before the row said SENT)
carries the same Message-ID and is recognisable as the same mail.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text, func, select, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.database import db, utc_now
from models.events import Event, EventType

# The events a customer gets a mail for, by kind of mail (the templates' names).
MAILED_EVENTS = {
    EventType.BOOKING_PAID: "paid",
    EventType.BOOKING_REJECTED: "rejected",
    EventType.BOOKING_PAYMENT_FAILED: "payment_failed",
    EventType.BOOKING_CANCELLED: "cancelled",
}
LOCALES = ("ko", "en")
DEFAULT_LOCALE = "ko"


class MailStatus(StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"


class Mail(db.Model):
    __tablename__ = "mails"
    __table_args__ = (
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in MailStatus) + ")", name="status_known"),
        Index("ix_mails_due", "next_attempt_at", postgresql_where=text("status = 'PENDING'")),
    )

    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), primary_key=True)
    booking_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(100))
    locale: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=MailStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retry_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, server_default=func.now())

    event: Mapped[Event] = relationship(lazy="joined", innerjoin=True)


# The mail of each customer event, with the customer's address, name and language as they are now.
_RECORD = text("""
    INSERT INTO mails (event_id, booking_id, kind, recipient, name, locale, status, attempts,
                       next_attempt_at, retry_until, queued_at, created_at)
    SELECT e.id, e.booking_id, kinds.kind, u.email, u.name, u.locale, 'PENDING', 0,
           now(), now() + make_interval(secs => :retry_for_s), now(), now()
    FROM events e
    JOIN unnest(CAST(:types AS varchar[]), CAST(:kinds AS varchar[])) AS kinds(type, kind) ON kinds.type = e.type
    JOIN bookings b ON b.id = e.booking_id JOIN users u ON u.id = b.customer_id
    WHERE e.id = ANY(CAST(:ids AS varchar[]))
    ON CONFLICT DO NOTHING
    RETURNING event_id
""")


def record_mails(event_ids: list[str], retry_for_s: float) -> list[str]:
    """Write the mails these events call for; returns their event ids (to publish after commit)."""
    if not event_ids:
        return []
    return list(db.session.scalars(_RECORD, {
        "ids": event_ids, "types": [str(t) for t in MAILED_EVENTS], "kinds": list(MAILED_EVENTS.values()),
        "retry_for_s": retry_for_s}))


def claim_mail(event_id: str, lease_s: float) -> Mail | None:
    """Take a due mail for an attempt now, or None (sent, failed, not due, or held by another
    worker). Its next attempt moves a lease ahead: a worker that dies leaves it due again."""
    mail = db.session.scalar(select(Mail).where(Mail.event_id == event_id).with_for_update(skip_locked=True, of=Mail))
    if mail is None or mail.status != MailStatus.PENDING:
        return None
    now = utc_now()
    mail.queued_at = None
    if mail.next_attempt_at > now:
        return None
    mail.attempts += 1
    mail.next_attempt_at = now + timedelta(seconds=lease_s)
    return mail


def mark_sent(event_id: str, message_id: str) -> None:
    db.session.execute(text("""
        UPDATE mails SET status = 'SENT', sent_at = now(), message_id = :message_id, last_error = NULL
        WHERE event_id = :id AND status = 'PENDING'"""), {"id": event_id, "message_id": message_id})


def mark_not_sent(event_id: str, attempt: int, error: str, delay_s: float, *, permanent: bool = False) -> None:
    """The SMTP server did not take it: try again after delay_s, or give up (a permanent refusal,
    or the retry window has passed)."""
    db.session.execute(text("""
        UPDATE mails SET last_error = :error, next_attempt_at = now() + make_interval(secs => :delay),
               status = CASE WHEN :permanent OR now() >= retry_until THEN 'FAILED' ELSE 'PENDING' END
        WHERE event_id = :id AND status = 'PENDING' AND attempts = :attempt"""),
        {"id": event_id, "attempt": attempt, "error": error[:2000], "delay": delay_s, "permanent": permanent})


def due_mails(requeue_after_s: float, limit: int = 500) -> list[str]:
    """Mails to send to the broker now (due, and on no queue or on one too long), marked as sent."""
    return list(db.session.scalars(text("""
        UPDATE mails SET queued_at = now() WHERE event_id IN (
            SELECT event_id FROM mails WHERE status = 'PENDING' AND next_attempt_at <= now()
              AND (queued_at IS NULL OR queued_at < now() - make_interval(secs => :requeue))
            ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)
        RETURNING event_id"""), {"requeue": requeue_after_s, "limit": limit}))


def message_id_for(event_id: str, domain: str) -> str:
    """The Message-ID of an event's mail: the same on every attempt."""
    return f"<{event_id}@{domain}>"
