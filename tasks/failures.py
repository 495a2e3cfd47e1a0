"""Recording steps that gave up, so admins can see and retry them."""
import logging

from models import db
from models.task_failures import count_redelivery, record_failure

log = logging.getLogger(__name__)


def record_task_failure(task, exc: BaseException, args) -> None:
    booking_id = args[0] if args else None
    attempts = (task.request.retries or 0) + 1
    log.error("step %s for booking %s gave up after %s attempts: %r", task.name, booking_id, attempts, exc)
    try:
        db.session.rollback()
        record_failure(task.name, booking_id, repr(exc), attempts)
        db.session.commit()
    except Exception:  # the database may be what failed; the periodic re-drive still covers the booking
        log.exception("could not record the failure of %s", task.name)
        db.session.rollback()


# A step handed back this many times after its worker died, on the same attempt, is given up:
# it is recorded for admins (and its booking left to the re-drive and hold-expiry jobs).
MAX_REDELIVERIES = 3


def too_many_redeliveries(task, args) -> bool:
    """Count a redelivery (RELIABILITY row 3) in the database; True when the step must stop.

    Only messages the broker handed back (worker lost, Redis restored unacked) are counted, so a
    normal delivery costs nothing. The count is committed before the step runs: if this delivery
    kills the worker too, the next one sees it.
    """
    booking_id = args[0] if args else None
    try:
        count = count_redelivery(task.request.id, task.name, booking_id, task.request.retries or 0)
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not count the redelivery of %s", task.name)
        return False
    if count <= MAX_REDELIVERIES:
        log.warning("step %s for booking %s redelivered (%d) after its worker died", task.name, booking_id, count)
        return False
    log.error("step %s for booking %s killed its worker %d times: giving up", task.name, booking_id, count)
    record_failure(task.name, booking_id, f"worker lost on {count} deliveries of the same attempt",
                   (task.request.retries or 0) + count)
    db.session.commit()
    return True
