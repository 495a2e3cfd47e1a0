"""Publishing steps after commit, never before (the outbox's other half).

Steps recorded by a unit of work (services/unit_of_work.py, `uow.then`) are handed to the step
publisher installed here as soon as their transaction commits; it publishes them and deletes
their outbox rows. If the broker is down or the process dies in between, the rows stay, and the
relay (maintenance.relay_outbox) publishes them later. Consumers are idempotent, so the rare
double publish is harmless.
"""
import logging
import os
import signal
import threading
import time

from flask import Flask, current_app

import celeryconfig
from sqlalchemy import delete, select, text

from models import db
from models.outbox import OutboxMessage
from observability import current_request_id
from tasks.background import ProcessThread

log = logging.getLogger(__name__)


# Every booking step takes a list of bookings. Its outbox rows (one per booking) go out grouped,
# up to STEP_BATCH_SIZE bookings a message: one message, one task start and a few transactions
# for a batch instead of for each booking. A row marked alone goes out in a message of its own.
STEP_BATCH_SIZE = int(os.environ.get("STEP_BATCH_SIZE", "25"))


# RabbitMQ: how long a publish waits for its confirm. A node in a memory or disk alarm blocks its
# publishers without an error; past this the publish fails, and the outbox row stays for the relay.
CONFIRM_TIMEOUT_S = float(os.environ.get("BROKERCONFIRM_TIMEOUT_S", "3"))
CONFIRM = {"confirm_timeout": CONFIRM_TIMEOUT_S} if celeryconfig.BROKER_IS_RABBITMQ else {}


def send(task: str, args: list, producer=None) -> None:
    """Send one task message now (no outbox). The request id travels in the message headers, so
    the step's log lines carry it too."""
    current_app.extensions["celery"].send_task(task, args=args, headers={"request_id": current_request_id()},
                                               producer=producer, **CONFIRM)


def publish_many(steps: list[tuple[str, str, bool]]) -> None:
    """Publish (step, booking id, alone) over one broker connection, grouped by step."""
    batches: dict[str, list[str]] = {}
    with current_app.extensions["celery"].producer_or_acquire() as producer:
        for task, booking_id, alone in steps:
            if alone:
                send(task, [[booking_id]], producer)
                log.info("step %s published for booking %s", task, booking_id,
                         extra={"step": task, "booking_id": booking_id})
            else:
                batches.setdefault(task, []).append(booking_id)
        for task, ids in batches.items():
            for start in range(0, len(ids), STEP_BATCH_SIZE):
                chunk = ids[start:start + STEP_BATCH_SIZE]
                send(task, [chunk], producer)
                log.info("step %s published for %d booking(s)", task, len(chunk),
                         extra={"step": task, "bookings": len(chunk)})


def publish_and_forget(ready: list[tuple[int, str, str, bool]]) -> None:
    """Publish committed steps now; their outbox rows are deleted in the background."""
    try:
        publish_many([(task, booking_id, alone) for _, task, booking_id, alone in ready])
    except Exception as error:  # broker down: the relay publishes them later (a few may go twice)
        log.warning("broker unavailable, %d step(s) left to the outbox relay: %r", len(ready), error)
        return
    if _DIE_AFTER_SEND_FILE:
        _die_after_send_if_asked(ready)
    _sweeper.forget([message_id for message_id, *_ in ready], current_app._get_current_object())


# Test-only fault (RELIABILITY row 7c: the dispatcher killed between send and mark-sent). Set
# only by tests/integration/test_reliability_rows.py on a worker of its own: never in production,
# where the variable is unset and this costs one test of a module constant per commit. When the
# file it names lists a step just published, the process deletes the file (so it dies once) and
# SIGKILLs itself before its outbox rows are deleted.
_DIE_AFTER_SEND_FILE = os.environ.get("UNSAFE_TEST_DIE_AFTER_SEND_FILE")


def _die_after_send_if_asked(ready: list[tuple[int, str, str, bool]]) -> None:
    try:
        with open(_DIE_AFTER_SEND_FILE) as file:
            steps = set(file.read().split())
        if not steps & {task for _, task, *_ in ready}:
            return
        os.remove(_DIE_AFTER_SEND_FILE)
    except FileNotFoundError:  # not asked, or another process took this death
        return
    log.warning("UNSAFE_TEST_DIE_AFTER_SEND_FILE: dying after the send, before the outbox rows are deleted")
    os.kill(os.getpid(), signal.SIGKILL)


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
        self._app = None
        self._thread = ProcessThread(self._run, "outbox-sweeper")

    def forget(self, ids: list[int], app: Flask) -> None:
        with self._lock:
            self._ids.extend(ids)
            self._app = app
        self._thread.ensure_started()

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
        .returning(OutboxMessage.task, OutboxMessage.booking_id, OutboxMessage.alone)
    ).all()
    if rows:
        publish_many([tuple(row) for row in rows])  # an error rolls the delete back
    db.session.commit()
    return len(rows)
