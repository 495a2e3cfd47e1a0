"""The transactional outbox: downstream steps recorded in the same transaction as the change
that calls for them, so a committed change can never lose its next step.

After commit the steps are published at once (see tasks/publishing.py); whatever was not
published (broker down, process killed) is published later by the outbox relay. A step
published twice is harmless: every step is idempotent.
"""
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, String, func
from sqlalchemy.orm import Mapped, mapped_column

from models.database import db


class OutboxMessage(db.Model):
    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    booking_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


def enqueue(task: str, booking_id: str) -> None:
    """Ask for step `task` on a booking once the current transaction commits."""
    message = OutboxMessage(task=task, booking_id=booking_id)
    db.session.add(message)
    db.session.info.setdefault("outbox", []).append(message)
