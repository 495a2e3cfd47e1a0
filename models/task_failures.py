"""Steps that exhausted their retries: kept for admins to see and retry (Redis has no dead-letter queue)."""
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Integer, String, Text, func, text
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


# One round trip on every step start, so plain SQL: it also tells PostgreSQL not to wait for the
# disk on this commit (a count lost to a database crash costs at most a few more starts; a killed
# worker does not lose a committed count).
_COUNT_START = text("""
    WITH no_fsync AS (SELECT set_config('synchronous_commit', 'off', true))
    INSERT INTO task_starts (task_id, task, booking_id, retries, starts, updated_at)
    SELECT :task_id, :task, :booking_id, :retries, 1, now() FROM no_fsync
    ON CONFLICT (task_id) DO UPDATE SET
        starts = CASE WHEN task_starts.retries = excluded.retries THEN task_starts.starts + 1 ELSE 1 END,
        retries = excluded.retries,
        updated_at = excluded.updated_at
    RETURNING starts
""")


def count_start(task_id: str, task: str, booking_id: str | None, retries: int) -> int:
    """Count one more start of this attempt; returns the starts of this attempt (1 normally).
    A retry (a higher retry number) starts counting again. Committed by the caller."""
    return db.session.execute(_COUNT_START, {"task_id": task_id, "task": task, "booking_id": booking_id,
                                             "retries": retries}).scalar_one()


def prune_starts(older_than_s: int) -> int:
    """Forget the start counts of attempts older than this (far past the visibility timeout)."""
    from sqlalchemy import delete
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s)
    return db.session.execute(delete(TaskStart).where(TaskStart.updated_at < cutoff)).rowcount
