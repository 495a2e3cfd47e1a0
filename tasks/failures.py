"""Recording steps that gave up, so admins can see and retry them."""
import logging
import os

import celeryconfig

from models import db
from models.task_failures import count_start, record_failure
from services.recovery import run_alone
from services.batches import as_booking_ids

log = logging.getLogger(__name__)


def booking_of(task, args) -> str | None:
    """The booking a step is about: its first argument; for a batch step, the batch's first
    booking; none for a step about a show."""
    kind = getattr(task, "booking_arg", True)
    if not args or not kind:
        return None
    if kind == "batch" and isinstance(args[0], list):
        return args[0][0] if args[0] and isinstance(args[0][0], str) else None
    return args[0] if isinstance(args[0], str) else None


def record_task_failure(task, exc: BaseException, args) -> None:
    booking_id = booking_of(task, args)
    attempts = (task.request.retries or 0) + 1
    log.error("step %s for booking %s gave up after %s attempts: %r", task.name, booking_id, attempts, exc)
    try:
        db.session.rollback()
        record_failure(task.name, booking_id, repr(exc), attempts)
        db.session.commit()
    except Exception:  # the database may be what failed; the periodic re-drive still covers the booking
        log.exception("could not record the failure of %s", task.name)
        db.session.rollback()


# A step started this many times more than once on the same attempt (its worker died each time)
# is given up: recorded for admins, its booking left to the re-drive and hold-expiry jobs.
MAX_REDELIVERIES = int(os.environ.get("TASK_MAX_REDELIVERIES", "3"))


def first_delivery(request) -> bool:
    """RabbitMQ says so: a message it delivered before carries its redelivered flag and, from a
    quorum queue, the x-delivery-count header (each delivery that came back: a consumer dead, a
    message rejected). On Redis nothing says so reliably (a restored message is not flagged)."""
    if not celeryconfig.BROKER_IS_RABBITMQ:
        return False
    redelivered = (request.delivery_info or {}).get("redelivered")
    return not redelivered and not getattr(request, "x-delivery-count", None)


def too_many_starts(task, args) -> bool:
    """Count this start in the database (RELIABILITY row 3); True when the step must not run.

    On Redis every start is counted, not only messages flagged as redelivered: the flag is not
    something to rest correctness on there. On RabbitMQ it is (first_delivery), so a first
    delivery costs nothing and only redeliveries are counted, plus the uncounted first. The count
    is committed before the step runs, so if this start kills the worker too, the next one sees
    it. If the database cannot be reached the step runs anyway (it needs the database, and will
    retry).
    """
    if first_delivery(task.request):
        return False
    booking_id = booking_of(task, args)
    try:
        starts = count_start(task.request.id, task.name, booking_id, task.request.retries or 0)
        if celeryconfig.BROKER_IS_RABBITMQ:
            starts += 1  # its first start, on its first delivery, was not counted
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not count the start of %s", task.name)
        return False
    if starts <= 1 + MAX_REDELIVERIES:
        if starts > 1:
            log.warning("step %s for booking %s started again (%d) on the same attempt: its worker died",
                        task.name, booking_id, starts)
        return False
    batch = as_booking_ids(args[0]) if getattr(task, "booking_arg", True) == "batch" and args else []
    if len(batch) > 1:
        # One booking of the batch may be what kills the worker: each goes on as its own step,
        # so only that one is given up, and the rest are not held back by it.
        log.error("batch step %s killed its worker on %d starts: its %d booking(s) go on one by one",
                  task.name, starts - 1, len(batch))
        run_alone(task.name, batch)
        return True
    log.error("step %s for booking %s killed its worker on %d starts: giving up", task.name, booking_id, starts - 1)
    record_failure(task.name, booking_id, f"worker lost on {starts - 1} starts of the same attempt",
                   (task.request.retries or 0) + starts - 1)
    db.session.commit()
    return True
