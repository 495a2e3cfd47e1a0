"""Steps that exhausted their retries: kept for admins to see and retry (Redis has no dead-letter queue)."""
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from models.database import db, utc_now


class TaskFailure(db.Model):
    __tablename__ = "task_failures"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    booking_id: Mapped[str | None] = mapped_column(String(36), index=True)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, server_default=func.now())
    retried_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def record_failure(task: str, booking_id: str | None, error: str, attempts: int) -> TaskFailure:
    failure = TaskFailure(task=task, booking_id=booking_id, error=error[:4000], attempts=attempts)
    db.session.add(failure)
    return failure
