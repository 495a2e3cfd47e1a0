"""Recording steps that gave up, so admins can see and retry them."""
import logging

from models import db
from models.task_failures import record_failure

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
