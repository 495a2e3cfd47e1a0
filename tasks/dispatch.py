"""Publishing steps after commit, never before (the outbox's other half).

Steps recorded with models.outbox.enqueue are published as soon as their transaction commits
and their outbox rows deleted. If the broker is down or the process dies in between, the rows
stay, and the relay (maintenance.relay_outbox) publishes them later. Consumers are idempotent,
so the rare double publish is harmless.
"""
import logging

from flask import Flask, current_app
from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from models import db
from models.outbox import OutboxMessage

log = logging.getLogger(__name__)


def publish(task: str, booking_id: str) -> None:
    current_app.extensions["celery"].send_task(task, args=[booking_id])


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
    """Publish committed steps now; delete the rows of those that went out."""
    sent = []
    try:
        for message_id, task, booking_id in ready:
            publish(task, booking_id)
            sent.append(message_id)
    except Exception as error:  # broker down: the relay publishes the rest later
        log.warning("broker unavailable, %d step(s) left to the outbox relay: %r", len(ready) - len(sent), error)
    if not sent:
        return
    try:
        with db.engine.begin() as connection:
            connection.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(sent)))
    except Exception as error:  # the relay will publish these again; consumers deduplicate
        log.warning("could not clear %d sent outbox row(s): %r", len(sent), error)


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
