"""Steps that exhausted their retries: kept for admins to see and retry (Redis has no dead-letter queue)."""
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Integer, String, Text, case, func
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


class TaskRedelivery(db.Model):
    """How often one attempt of a step came back after its worker died (RELIABILITY row 3).

    `task_reject_on_worker_lost` hands a message back when its worker process is killed, with
    the same retry count, so a step that kills its worker every time would loop for ever. Each
    redelivery of the same (task id, retry number) is counted here, in the database, because
    nothing in the broker survives the loop; past the cap the step is recorded as failed.
    """
    __tablename__ = "task_redeliveries"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    booking_id: Mapped[str | None] = mapped_column(String(36))
    retries: Mapped[int] = mapped_column(Integer)
    redeliveries: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, server_default=func.now())


def count_redelivery(task_id: str, task: str, booking_id: str | None, retries: int) -> int:
    """Count one more redelivery of this attempt; returns how many there were (committed by caller)."""
    from sqlalchemy.dialects.postgresql import insert

    stmt = insert(TaskRedelivery).values(task_id=task_id, task=task, booking_id=booking_id,
                                         retries=retries, redeliveries=1, updated_at=utc_now())
    stmt = stmt.on_conflict_do_update(
        index_elements=[TaskRedelivery.task_id],
        set_={
            "redeliveries": case((TaskRedelivery.retries == stmt.excluded.retries, TaskRedelivery.redeliveries + 1),
                                 else_=1),
            "retries": stmt.excluded.retries,
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(TaskRedelivery.redeliveries)
    return db.session.execute(stmt).scalar_one()
