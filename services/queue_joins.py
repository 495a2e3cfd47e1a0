"""Joins of waiting rooms written to PostgreSQL in batches (group commit): a join is answered 201
only once its entry is committed, yet a rush of joins costs one INSERT per batch, not one per
request (SPEC §9: no PostgreSQL write per join).

Each process has one writer thread. A request hands it its join and waits; the thread takes every
join waiting at that moment, writes them in one statement and one commit, and wakes their
requests. While it writes, the next batch gathers, so the batch grows with the load.

A batch first takes SHARE on the rooms it writes to, and holds it until it commits:
- The draw locks the room FOR UPDATE, so a join either commits before the draw reads the early
  joiners (and is drawn with them) or reads, after it, that the room was drawn (and queues in
  arrival order behind them): none is left out of both.
- An admission run locks the room FOR NO KEY UPDATE, which waits for every batch in flight: when
  it reads the queue, every entry that has drawn an arrival number is committed. So no entry is
  admitted ahead of one with a smaller number that was not visible yet (numbers are drawn in
  INSERT order but batches of different processes may commit in another).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from flask import Flask
from sqlalchemy import text

from models import db
from models.errors import Conflict, NotFound
from observability.metrics import QUEUE_JOIN_BATCHES, QUEUE_JOINS_WRITTEN

log = logging.getLogger(__name__)
MAX_BATCH = 500


@dataclass(frozen=True)
class Written:
    """An entry as PostgreSQL holds it after the join: the new one, or the customer's earlier one."""
    id: str
    show_id: str
    customer_id: str
    state: str
    early: bool
    draw_rank: int | None
    arrival_seq: int
    admitted_until: datetime | None
    created: bool


@dataclass(frozen=True)
class _Join:
    entry_id: str
    show_id: str
    customer_id: str
    joined_at: datetime
    written: Future


_LOCK_ROOMS = text("SELECT show_id FROM waiting_rooms WHERE show_id = ANY(:shows) ORDER BY show_id FOR SHARE")
_INSERT = text("""
    INSERT INTO queue_entries (id, show_id, customer_id, joined_at, arrival_seq, early, state)
    SELECT joins.id, joins.show_id, joins.customer_id, joins.joined_at, nextval('queue_arrival_seq'),
           room.drawn_at IS NULL AND show.on_sale_at IS NOT NULL AND joins.joined_at < show.on_sale_at, 'WAITING'
    FROM (SELECT * FROM unnest(CAST(:ids AS varchar[]), CAST(:shows AS varchar[]), CAST(:customers AS varchar[]),
                               CAST(:joined AS timestamptz[])) WITH ORDINALITY AS j(id, show_id, customer_id, joined_at, n)
          ORDER BY n) AS joins
    JOIN waiting_rooms AS room ON room.show_id = joins.show_id
    JOIN shows AS show ON show.id = joins.show_id AND show.cancelled_at IS NULL
    ON CONFLICT (show_id, customer_id) DO NOTHING
    RETURNING id
""")
_READ = text("""
    SELECT entry.id, entry.show_id, entry.customer_id, entry.state, entry.early, entry.draw_rank, entry.arrival_seq,
           entry.admitted_until
    FROM queue_entries AS entry
    JOIN unnest(CAST(:shows AS varchar[]), CAST(:customers AS varchar[])) AS wanted(show_id, customer_id)
      ON entry.show_id = wanted.show_id AND entry.customer_id = wanted.customer_id
""")


class JoinWriter:
    def __init__(self, app: Flask):
        self.app = app
        self.joins: queue.SimpleQueue[_Join] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="queue-join-writer", daemon=True)
        self.thread.start()

    def write(self, entry_id: str, show_id: str, customer_id: str, joined_at: datetime,
              timeout_s: float = 10.0) -> Written:
        join = _Join(entry_id, show_id, customer_id, joined_at, Future())
        self.joins.put(join)
        return join.written.result(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            batch = [self.joins.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.joins.get_nowait())
                except queue.Empty:
                    break
            try:
                with self.app.app_context():
                    written, cancelled = _write(batch)
            except Exception as error:  # the database is away: these joins fail, the next batch tries again
                log.warning("could not write %d queue joins: %r", len(batch), error)
                for join in batch:
                    join.written.set_exception(error)
                continue
            QUEUE_JOIN_BATCHES.inc()
            QUEUE_JOINS_WRITTEN.inc(len(batch))
            for join in batch:
                found = written.get((join.show_id, join.customer_id))
                if found is None and join.show_id in cancelled:
                    join.written.set_exception(Conflict("the show was cancelled"))
                elif found is None:
                    join.written.set_exception(NotFound("this show has no waiting room"))
                else:
                    join.written.set_result(found)


_CANCELLED = text("SELECT id FROM shows WHERE id = ANY(:shows) AND cancelled_at IS NOT NULL")


def _write(batch: list[_Join]) -> tuple[dict[tuple[str, str], Written], set[str]]:
    """Write a batch of joins; returns what each customer's entry is now, and which of the shows
    were cancelled (a show cancel locks the room FOR UPDATE, so a batch after it sees it: SPEC §11)."""
    try:
        shows = [join.show_id for join in batch]
        customers = [join.customer_id for join in batch]
        db.session.execute(_LOCK_ROOMS, {"shows": sorted(set(shows))})
        created = set(db.session.scalars(_INSERT, {
            "ids": [join.entry_id for join in batch], "shows": shows, "customers": customers,
            "joined": [join.joined_at for join in batch]}))
        rows = db.session.execute(_READ, {"shows": shows, "customers": customers}).all()
        cancelled = set(db.session.scalars(_CANCELLED, {"shows": sorted(set(shows))})) if len(created) < len(batch) else set()
        db.session.commit()
    finally:
        db.session.remove()
    return {(row.show_id, row.customer_id): Written(row.id, row.show_id, row.customer_id, row.state, row.early,
                                                    row.draw_rank, row.arrival_seq, row.admitted_until,
                                                    row.id in created)
            for row in rows}, cancelled


_writers_lock = threading.Lock()


def writer(app: Flask) -> JoinWriter:
    """This app's writer in this process (a forked worker starts its own)."""
    key = ("queue_join_writer", os.getpid())
    found = app.extensions.get(key)
    if found is None:
        with _writers_lock:
            found = app.extensions.get(key)
            if found is None:
                found = app.extensions[key] = JoinWriter(app)
    return found
