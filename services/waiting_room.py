"""The waiting room (SPEC §9): join, poll, leave; the draw and the admissions; the Admission-Token.

- Join and poll read the Redis index (shared_state/queue_index.py); a new join is written to
  PostgreSQL in a batch with others (services/queue_joins.py) and answered once committed.
- The admission job (`admit_due`, run by beat several times a second) draws each room's early
  joiners at on_sale_at and then admits entries in queue order at the room's rate. Every
  admission is a move WAITING -> ADMITTED under the room's row lock, so two runs at once, or a run
  killed half-way, never admit anyone twice: a killed run's transaction is rolled back, the next
  run admits what is due.
- An admitted customer polls an Admission-Token: an HS256 JWT naming the customer, the show and
  the entry, valid for session_minutes from the admission. POST /bookings checks it first.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from contextlib import contextmanager
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt
import redis
from flask import current_app
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from models import db
from models.database import new_id, utc_now
from models.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from models.lifecycles import QueueState
from models.shows import Show, get_show
from models.waiting_room import (LATE, QueueEntry, WaitingRoom, admit_next, get_room, order_score,
                                 rank_early_joiners, shown_state)
from services.queue_joins import writer
from services.unit_of_work import UnitOfWork
from shared_state.queue_index import QueueIndex
from shared_state.redis_clients import redis_client

log = logging.getLogger(__name__)

AUDIENCE = "boxoffice:admission"
# The draw waits this long after on_sale_at, so joins answered just before it are committed.
DRAW_GRACE = timedelta(seconds=0.5)
# What a join reads of its show (on sale, started, sold out) is at most this old.
FACTS_TTL_S = 1.0


@dataclass(frozen=True)
class EntryView:
    id: str
    show_id: str
    state: str
    position: int | None
    ahead: int | None
    estimated_wait_s: int | None
    admission_token: str | None = None
    admitted_until: datetime | None = None


# --- the index, the facts a join needs, the token -----------------------------------------------

def _index() -> QueueIndex:
    config = current_app.config
    client = redis_client(config.get("QUEUE_REDIS_URL") or config["REDIS_URL"], config.get("QUEUE_REDIS_TIMEOUT_S", 1.0))
    index = getattr(client, "_queue_index", None)
    if index is None:
        index = client._queue_index = QueueIndex(client)
    return index


@dataclass(frozen=True)
class _Facts:
    queued: bool
    starts_at: datetime
    on_sale_at: datetime | None
    sold_out: bool
    admit_per_minute: int | None
    cancelled: bool = False


_facts: dict[str, tuple[float, _Facts]] = {}


def _facts_of(show_id: str) -> _Facts:
    cached = _facts.get(show_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    with _database_or_unavailable():
        row = db.session.execute(
            select(Show.starts_at, Show.on_sale_at, Show.remaining, WaitingRoom.show_id, WaitingRoom.admit_per_minute,
                   Show.cancelled_at)
            .outerjoin(WaitingRoom, WaitingRoom.show_id == Show.id).where(Show.id == show_id)).one_or_none()
        db.session.rollback()  # a read: end its transaction now, not at the end of the request
    if row is None:
        raise NotFound("show not found")
    facts = _Facts(row[3] is not None, row.starts_at, row.on_sale_at, row.remaining == 0, row.admit_per_minute,
                   row.cancelled_at is not None)
    if len(_facts) > 1024:
        _facts.clear()
    _facts[show_id] = (time.monotonic() + FACTS_TTL_S, facts)
    return facts


@contextmanager
def _database_or_unavailable():
    """Join and poll with PostgreSQL away: 503 (try again), not 500."""
    try:
        yield
    except SQLAlchemyError as error:
        db.session.rollback()
        log.warning("the waiting room could not reach the database: %r", error)
        raise Unavailable("the waiting room cannot answer at this moment; try again in a few seconds") from None


def _token_key() -> bytes:
    config = current_app.config
    secret = config.get("ADMISSION_TOKEN_SECRET")
    if secret:
        return secret.encode()
    # Derived from the API's signing key, so no second secret is needed, yet an access token is
    # never an Admission-Token (another key, another audience).
    return hmac.new(str(config["JWT_SECRET_KEY"]).encode(), b"admission-token", hashlib.sha256).digest()


def admission_token(entry_id: str, customer_id: str, show_id: str, until: datetime) -> str:
    return jwt.encode({"sub": customer_id, "sid": show_id, "qid": entry_id, "aud": AUDIENCE,
                       "exp": int(until.timestamp())}, _token_key(), algorithm="HS256")


def verify_admission(token: str, customer_id: str, show_id: str) -> str:
    """The entry of a valid Admission-Token for this customer and show; Forbidden otherwise."""
    try:
        claims = jwt.decode(token, _token_key(), algorithms=["HS256"], audience=AUDIENCE,
                            options={"require": ["exp", "sub", "sid", "qid"]})
    except jwt.ExpiredSignatureError:
        raise Forbidden("the Admission-Token has expired: your turn in the waiting room is over") from None
    except jwt.InvalidTokenError:
        raise Forbidden("the Admission-Token is not valid") from None
    if claims["sub"] != customer_id:
        raise Forbidden("the Admission-Token was issued to another customer")
    if claims["sid"] != show_id:
        raise Forbidden("the Admission-Token is for another show")
    return claims["qid"]


def _view(entry_id: str, show_id: str, customer_id: str, state: str, position: int | None, ahead: int | None,
          until: datetime | None, rate: int | None, now: datetime) -> EntryView:
    shown = shown_state(state, until, now)
    if shown != QueueState.WAITING:
        position = ahead = None
    elif rate is None and ahead is not None:  # the index has no rate yet (no tick since it was built)
        rate = _facts_of(show_id).admit_per_minute
    wait = math.ceil((ahead + 1) * 60 / rate) if shown == QueueState.WAITING and ahead is not None and rate else None
    token = admission_token(entry_id, customer_id, show_id, until) if shown == QueueState.ADMITTED else None
    return EntryView(entry_id, show_id, shown, position, ahead, wait, token,
                     until if shown in (QueueState.ADMITTED, QueueState.EXPIRED) else None)


def _epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


# --- join, poll, leave ----------------------------------------------------------------------------

def join(customer_id: str, show_id: str) -> tuple[EntryView, bool]:
    """The customer's entry in the show's waiting room: a new one (created), or the one they have."""
    now = utc_now()
    facts = _facts_of(show_id)
    if not facts.queued:
        raise Conflict("this show has no waiting room: book it directly")
    index = _index()
    try:
        existing = index.entry_of(show_id, customer_id)
    except redis.RedisError:
        existing = None
    if existing is not None:
        return status(existing, customer_id), False
    if facts.cancelled:
        raise Conflict("the show was cancelled")
    if now >= facts.starts_at:
        raise Conflict("sales for this show are closed")
    if facts.sold_out:
        raise Conflict("this show is sold out")
    try:
        with _database_or_unavailable():
            written = writer(current_app._get_current_object()).write(new_id(), show_id, customer_id, now)
    except FutureTimeout:
        raise Unavailable("the waiting room cannot take joins at this moment; try again in a few seconds") from None
    score = order_score(written.draw_rank, written.arrival_seq, early=written.early)
    try:
        indexed = index.publish_join(show_id, customer_id, written.id, score, written.state)
    except redis.RedisError as error:
        log.warning("queue index unreachable, answering a join from PostgreSQL: %r", error)
        return _status_from_database(written.id, customer_id, now), written.created
    return _view(written.id, show_id, customer_id, indexed.state, indexed.position, indexed.ahead,
                 _epoch(indexed.admitted_until), indexed.admit_per_minute, now), written.created


def status(entry_id: str, customer_id: str) -> EntryView:
    """The customer's entry now; anyone else's -> NotFound."""
    now = utc_now()
    try:
        indexed = _index().status(entry_id)
    except redis.RedisError as error:
        log.warning("queue index unreachable, reading an entry from PostgreSQL: %r", error)
        indexed = None
    if indexed is None:  # not indexed (yet, or Redis lost it): PostgreSQL knows
        return _status_from_database(entry_id, customer_id, now)
    if indexed.customer_id != customer_id:
        raise NotFound("queue entry not found")
    return _view(entry_id, indexed.show_id, customer_id, indexed.state, indexed.position, indexed.ahead,
                 _epoch(indexed.admitted_until), indexed.admit_per_minute, now)


_PLACE = text(f"""
    SELECT count(*) FILTER (WHERE score < :score) + 1 AS position,
           count(*) FILTER (WHERE score < :score AND state = 'WAITING') AS ahead
    FROM (SELECT state, CASE WHEN draw_rank IS NOT NULL THEN draw_rank WHEN NOT early THEN {LATE} + arrival_seq END
                 AS score
          FROM queue_entries WHERE show_id = :show_id) AS entries
""")


def _status_from_database(entry_id: str, customer_id: str, now: datetime) -> EntryView:
    with _database_or_unavailable():
        return _read_status(entry_id, customer_id, now)


def _read_status(entry_id: str, customer_id: str, now: datetime) -> EntryView:
    entry = db.session.get(QueueEntry, entry_id)
    if entry is None or entry.customer_id != customer_id:
        raise NotFound("queue entry not found")
    room = db.session.get(WaitingRoom, entry.show_id)
    position = ahead = None
    if entry.score is not None and entry.state == QueueState.WAITING:
        place = db.session.execute(_PLACE, {"score": entry.score, "show_id": entry.show_id}).one()
        position, ahead = place.position, place.ahead
    db.session.rollback()
    return _view(entry.id, entry.show_id, customer_id, entry.state, position, ahead, entry.admitted_until,
                 room.admit_per_minute, now)


def leave(entry_id: str, customer_id: str) -> EntryView:
    """Give up the place (or the turn, once admitted). Leaving twice changes nothing."""
    now = utc_now()
    with UnitOfWork() as uow:
        entry = db.session.get(QueueEntry, entry_id)
        if entry is None or entry.customer_id != customer_id:
            raise NotFound("queue entry not found")
        # The room first (FOR SHARE: no admission or rebuild runs meanwhile), then the entry.
        db.session.execute(select(WaitingRoom.show_id).where(WaitingRoom.show_id == entry.show_id).with_for_update(read=True))
        entry = db.session.get(QueueEntry, entry_id, with_for_update=True, populate_existing=True)
        entry.leave(now)
        show_id = entry.show_id
        uow.commit()
    try:
        _index().publish_left(show_id, entry_id)
    except redis.RedisError as error:
        log.warning("queue index unreachable, a leave is published by the next rebuild: %r", error)
    return _view(entry_id, show_id, customer_id, QueueState.LEFT, None, None, None, None, now)


# --- admin: configure, stats --------------------------------------------------------------------

def configure(show: Show, settings: dict, now: datetime) -> None:
    """Give the show a waiting room, or change its rate or session length (its row is locked, or
    it is being created). A new rate applies from now; the slots already due stay due."""
    room = show.waiting_room
    if room is None:
        if "admit_per_minute" not in settings:
            raise InvalidInput("a waiting room needs its rate", {"waiting_room.admit_per_minute": ["required"]})
        show.waiting_room = WaitingRoom(admit_per_minute=settings["admit_per_minute"],
                                        session_minutes=settings.get("session_minutes") or 10,
                                        early_joiners=0, schedule_base=0, slots_used=0, admitted=0)
        return
    room = get_room(show.id, lock="no key update")
    if "admit_per_minute" in settings:
        room.change_rate(settings["admit_per_minute"], now)
    if settings.get("session_minutes") is not None:
        room.session_minutes = settings["session_minutes"]


def check_sale_change(show: Show, changes: dict) -> None:
    """on_sale_at cannot move once the early joiners were drawn."""
    room = show.waiting_room
    if "on_sale_at" in changes and room is not None and room.drawn and changes["on_sale_at"] != show.on_sale_at:
        raise Conflict("the waiting room's early joiners were drawn: on_sale_at can no longer change")


def stats(show_id: str) -> dict:
    get_show(show_id)
    room = get_room(show_id)
    now = utc_now()
    rows = db.session.execute(text("""
        SELECT count(*) FILTER (WHERE state = 'WAITING') AS waiting,
               count(*) FILTER (WHERE state = 'ADMITTED' AND admitted_until > :now) AS admitted,
               count(*) FILTER (WHERE state = 'ADMITTED' AND admitted_until <= :now) AS expired,
               count(*) FILTER (WHERE state = 'LEFT') AS left_
        FROM queue_entries WHERE show_id = :show_id"""), {"now": now, "show_id": show_id}).one()
    return {"show_id": show_id, "waiting": rows.waiting, "admitted": rows.admitted, "expired": rows.expired,
            "left": rows.left_, "admitted_total": room.admitted, "admit_per_minute": room.admit_per_minute,
            "session_minutes": room.session_minutes,
            "draw": {"drawn_at": room.drawn_at, "seed": room.draw_seed, "early_joiners": room.early_joiners}}


# --- the admission job ----------------------------------------------------------------------------

def admit_due(now: datetime | None = None, *, only: list[str] | None = None) -> int:
    """One run of the admission job; returns how many it admitted. Rooms of shows whose sale is
    open are drawn (once) and admit what came due; every room of a show still to come gets its
    index rebuilt if Redis lost it; a cancelled show's room admits no one. `now` fixes the clock (tests); else each phase reads it."""
    clock = (lambda: now) if now is not None else utc_now
    started = clock()
    query = (select(WaitingRoom.show_id, Show.on_sale_at).join(Show, Show.id == WaitingRoom.show_id)
             .where(Show.starts_at > started, Show.cancelled_at.is_(None)).order_by(WaitingRoom.show_id))
    if only is not None:
        query = query.where(WaitingRoom.show_id.in_(only))
    rooms = db.session.execute(query).all()
    db.session.rollback()
    admitted = 0
    for show_id, on_sale_at in rooms:
        on_sale = on_sale_at is None or on_sale_at <= started - DRAW_GRACE
        admitted += _tick(show_id, clock, on_sale)
    return admitted


def _tick(show_id: str, clock, on_sale: bool) -> int:
    index = _index()
    if on_sale and get_room(show_id).drawn_at is None:
        _draw(show_id, clock)
    db.session.rollback()
    try:
        if not index.built(show_id):
            rebuild(show_id)
    except redis.RedisError as error:
        log.warning("queue index unreachable, admitting without it: %r", error)
    if not on_sale:
        return 0
    with UnitOfWork() as uow:
        room = get_room(show_id, lock="no key update")
        now = clock()
        if room.schedule_from is None:
            # The schedule starts once the draw and the index it needs are done, so their
            # seconds leave no backlog to catch up at the start of the sale.
            room.start(now)
        owed = room.admissions_due(now)
        admitted = []
        if owed:
            if db.session.scalar(select(Show.remaining).where(Show.id == show_id)) == 0:
                room.forfeit(now)  # sold out: nobody is let in to find nothing; seats coming back reopen it
            else:
                admitted = admit_next(room, owed, now)
                room.spend(len(admitted), owed=owed, now=now)
        rate = room.admit_per_minute
        uow.commit()
    try:
        index.publish_admitted(show_id, [(entry_id, until.timestamp()) for entry_id, until in admitted])
        index.publish_rate(show_id, rate)
    except redis.RedisError as error:
        log.warning("queue index unreachable, %d admissions are published by the next rebuild: %r", len(admitted), error)
        _forget(index, show_id)
    return len(admitted)


def _draw(show_id: str, clock) -> None:
    """Draw the early joiners' order, once: the room's row FOR UPDATE waits out every join batch in
    flight and holds off the next until it commits (services/queue_joins.py)."""
    with UnitOfWork() as uow:
        room = get_room(show_id, lock="update")
        if room.drawn_at is not None:
            return
        seed = secrets.token_hex(32)
        order = rank_early_joiners(room, seed)
        room.drawn_at, room.draw_seed, room.early_joiners = clock(), seed, len(order)
        uow.commit()
    log.info("waiting room of show %s drawn: %d early joiners", show_id, len(order))
    _forget(_index(), show_id)  # the ranks reach the index by the rebuild that follows


def _forget(index: QueueIndex, show_id: str) -> None:
    try:
        index.forget(show_id)
    except redis.RedisError:
        pass  # Redis is away: when it is back empty, the index is not marked built either


def rebuild(show_id: str) -> int:
    """Write the show's index from PostgreSQL, under the room's lock (no admission commits between
    the read and the write). Returns the entries written."""
    index = _index()
    with UnitOfWork() as uow:
        room = get_room(show_id, lock="no key update")
        rows = db.session.execute(
            select(QueueEntry.id, QueueEntry.customer_id, QueueEntry.state, QueueEntry.draw_rank,
                   QueueEntry.arrival_seq, QueueEntry.early, QueueEntry.admitted_until)
            .where(QueueEntry.show_id == show_id)).all()
        index.publish_all(show_id, ((row.id, row.customer_id, row.state,
                                     order_score(row.draw_rank, row.arrival_seq, early=row.early),
                                     row.admitted_until.timestamp() if row.admitted_until else None) for row in rows),
                          drawn=room.drawn, admit_per_minute=room.admit_per_minute)
        uow.commit()
    log.info("queue index of show %s rebuilt: %d entries", show_id, len(rows))
    return len(rows)


def recorded_draw(show_id: str) -> tuple[str | None, list[str]]:
    """The draw's seed and the early joiners in their drawn order, as recorded (the audit)."""
    room = get_room(show_id)
    ids = list(db.session.scalars(select(QueueEntry.id).where(
        QueueEntry.show_id == show_id, QueueEntry.draw_rank.is_not(None)).order_by(QueueEntry.draw_rank)))
    return room.draw_seed, ids

