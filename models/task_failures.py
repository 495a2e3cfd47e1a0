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


class TaskStart(db.Model):
    """How often one attempt of a step has been started (RELIABILITY row 3).

    `task_reject_on_worker_lost` hands a message back when its worker process is killed, with the
    same retry number, so a step that kills its worker every time would loop for ever. Every start
    of (task id, retry number) is counted here, committed before the step runs, because nothing in
    the broker survives the loop (and a restored message is not reliably marked redelivered).
    Past the cap the step is recorded as failed and not run. Rows are pruned after a while.
    """
    __tablename__ = "task_starts"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    booking_id: Mapped[str | None] = mapped_column(String(36))
    retries: Mapped[int] = mapped_column(Integer)
    starts: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, server_default=func.now(),
                                                 index=True)


def count_start(task_id: str, task: str, booking_id: str | None, retries: int) -> int:
    """Count one more start of this attempt, in one statement; returns the starts of this attempt
    (1 normally). A retry (a higher retry number) starts counting again. Committed by the caller."""
    from sqlalchemy.dialects.postgresql import insert

    stmt = insert(TaskStart).values(task_id=task_id, task=task, booking_id=booking_id,
                                    retries=retries, starts=1, updated_at=func.now())
    stmt = stmt.on_conflict_do_update(
        index_elements=[TaskStart.task_id],
        set_={
            "starts": case((TaskStart.retries == stmt.excluded.retries, TaskStart.starts + 1), else_=1),
            "retries": stmt.excluded.retries,
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(TaskStart.starts)
    return db.session.execute(stmt).scalar_one()


def prune_starts(older_than_s: int) -> int:
    """Forget the start counts of attempts older than this (far past the visibility timeout)."""
    from sqlalchemy import delete
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s)
    return db.session.execute(delete(TaskStart).where(TaskStart.updated_at < cutoff)).rowcount
