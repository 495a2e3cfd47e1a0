"""Publishing steps after commit, never before (the outbox's other half).

Steps recorded with models.outbox.enqueue are published as soon as their transaction commits
and their outbox rows deleted. If the broker is down or the process dies in between, the rows
stay, and the relay (maintenance.relay_outbox) publishes them later. Consumers are idempotent,
so the rare double publish is harmless.
"""
import logging
import os
import threading
import time

from flask import Flask, current_app
from sqlalchemy import delete, event, select, text
from sqlalchemy.orm import Session

from models import db
from models.outbox import OutboxMessage

log = logging.getLogger(__name__)


def publish(task: str, booking_id: str) -> None:
    # The request id travels in the message headers, so the step's log lines carry it too.
    from flask import has_request_context
    from web.observability import current_request_id, note_booking
    if has_request_context():
        note_booking(booking_id)
    request_id = current_request_id()
    current_app.extensions["celery"].send_task(task, args=[booking_id], headers={"request_id": request_id})
    log.info("step %s published for booking %s", task, booking_id, extra={"step": task, "booking_id": booking_id})


def init_dispatch(app: Flask) -> None:
    if app.extensions.get("outbox_dispatch"):
        return
    app.extensions["outbox_dispatch"] = True

    @event.listens_for(Session, "before_commit")
    def _collect(session):
        messages = session.info.pop("outbox", None)
        if messages:
            session.flush()
            session.info["outbox_ready"] = [(m.id, m.task, m.booking_id) for m in messages]

    @event.listens_for(Session, "after_commit")
    def _publish(session):
        ready = session.info.pop("outbox_ready", None)
        if ready:
            publish_and_forget(ready)

    @event.listens_for(Session, "after_rollback")
    def _discard(session):
        session.info.pop("outbox", None)
        session.info.pop("outbox_ready", None)


def publish_and_forget(ready: list[tuple[int, str, str]]) -> None:
    """Publish committed steps now; their outbox rows are deleted in the background."""
    sent = []
    try:
        for message_id, task, booking_id in ready:
            publish(task, booking_id)
            sent.append(message_id)
    except Exception as error:  # broker down: the relay publishes the rest later
        log.warning("broker unavailable, %d step(s) left to the outbox relay: %r", len(ready) - len(sent), error)
    if sent:
        _sweeper.forget(sent, current_app._get_current_object())


class SentRowSweeper:
    """Deletes the outbox rows of published steps, in batches, from one background thread.

    after_commit runs while the session still holds its connection, so deleting there would
    need a second connection per request (and can exhaust the pool under load). Batching also
    turns one DELETE per request into one per interval. Rows not yet swept when the process
    dies are published again by the relay; consumers deduplicate.
    """

    INTERVAL_S = 0.2

    def __init__(self):
        self._ids: list[int] = []
        self._lock = threading.Lock()
        self._pid = None
        self._app = None

    def forget(self, ids: list[int], app: Flask) -> None:
        with self._lock:
            self._ids.extend(ids)
            self._app = app
            if self._pid != os.getpid():  # first use in this process (or after a fork)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="outbox-sweeper", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.INTERVAL_S)
            self.sweep()

    def sweep(self) -> None:
        with self._lock:
            ids, self._ids = self._ids, []
            app = self._app
        if not ids:
            return
        try:
            with app.app_context(), db.engine.begin() as connection:
                # A delete lost to a database crash only means one more (harmless) publish.
                connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
                connection.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        except Exception as error:  # the relay will publish these again; consumers deduplicate
            log.warning("could not clear %d sent outbox row(s): %r", len(ids), error)


_sweeper = SentRowSweeper()


def relay_pending(older_than_s: float, limit: int = 500) -> int:
    """Publish outbox rows left behind. Safe to run in several processes at once (SKIP LOCKED)."""
    cutoff = db.func.now() - db.func.make_interval(0, 0, 0, 0, 0, 0, older_than_s)
    batch = (select(OutboxMessage.id).where(OutboxMessage.created_at < cutoff)
             .order_by(OutboxMessage.id).limit(limit).with_for_update(skip_locked=True))
    rows = db.session.execute(
        delete(OutboxMessage).where(OutboxMessage.id.in_(batch.scalar_subquery()))
        .returning(OutboxMessage.task, OutboxMessage.booking_id)
    ).all()
    for task, booking_id in rows:
        publish(task, booking_id)  # an error rolls the delete back: nothing is lost
    db.session.commit()
    return len(rows)
