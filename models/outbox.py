"""The transactional outbox: downstream steps recorded in the same transaction as the change
that calls for them, so a committed change can never lose its next step.

Steps are recorded through a unit of work (services/unit_of_work.py: `uow.then`), which
publishes them as soon as its transaction commits (tasks/publishing.py); whatever was not
published (broker down, process killed) is published later by the outbox relay. A step
published twice is harmless: every step is idempotent.
"""
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Identity, String, false, func
from sqlalchemy.orm import Mapped, mapped_column

from models.database import db


class OutboxMessage(db.Model):
    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    # The step's subject: a booking's id (for shows.cancel, the fan-out of a cancelled show, its show's).
    booking_id: Mapped[str] = mapped_column(String(36))
    # Published as a message of its own, not grouped with others of its step: a batch handing a
    # booking over, so that it retries (or fails) on its own.
    alone: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


def enqueue(task: str, booking_id: str, *, alone: bool = False) -> OutboxMessage:
    """Record step `task` for a booking in the current transaction (its unit of work publishes it)."""
    message = OutboxMessage(task=task, booking_id=booking_id, alone=alone)
    db.session.add(message)
    return message
