"""The waiting room in front of an on-sale (SPEC §9): its entries, the draw, and the admission rate.

A show with a waiting room (`WaitingRoom`) queues its customers (`QueueEntry`, one per customer and
show). Those who join before `on_sale_at` are "early": at the draw they get a uniformly random
order among themselves (`draw_order`, reproducible from the recorded seed); later joiners queue
behind them in arrival order. The queue order is therefore (draw_rank NULLS LAST, arrival_seq),
and `order_score` is the same order as one number for the fast index (shared_state/queue_index.py).

From the draw, entries are admitted in queue order at admit_per_minute, evenly: `admissions_due`
says how many of the schedule's slots have come due; a slot that finds nobody waiting is forfeit,
so an idle queue saves up no burst.

PostgreSQL holds the truth of every entry; Redis only an index rebuilt from it.
"""
from __future__ import annotations

import hashlib
import hmac
import math
from datetime import datetime, timedelta

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, Sequence,
                        String, UniqueConstraint, text)
from sqlalchemy.orm import Mapped, mapped_column

from models.database import db, new_id, utc_now
from models.errors import NotFound
from models.lifecycles import QUEUE, QueueState

ARRIVALS = Sequence("queue_arrival_seq", metadata=db.metadata)
# Early entries score 1..n (their draw rank); later ones after every possible rank, by arrival.
LATE = 2 ** 40
MAX_ADMIT_PER_MINUTE = 1_000_000
MAX_SESSION_MINUTES = 24 * 60
# Catching up after a stall (a killed worker), a tick admits at most this many seconds' worth.
CATCH_UP_S = 0.5


class WaitingRoom(db.Model):
    """A show's waiting room: its rate, its draw, and its admission schedule."""
    __tablename__ = "waiting_rooms"
    __table_args__ = (
        CheckConstraint(f"admit_per_minute BETWEEN 1 AND {MAX_ADMIT_PER_MINUTE}", name="rate_in_range"),
        CheckConstraint(f"session_minutes BETWEEN 1 AND {MAX_SESSION_MINUTES}", name="session_in_range"),
    )

    show_id: Mapped[str] = mapped_column(ForeignKey("shows.id"), primary_key=True)
    admit_per_minute: Mapped[int] = mapped_column(Integer)
    session_minutes: Mapped[int] = mapped_column(Integer, default=10)
    # The draw: when it ran, over how many early joiners, and the seed that reproduces its order.
    drawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    draw_seed: Mapped[str | None] = mapped_column(String(64))
    early_joiners: Mapped[int] = mapped_column(Integer, default=0)
    # The schedule: schedule_base slots were due at schedule_from, then admit_per_minute more each
    # minute. slots_used counts those spent (an admission, or forfeit for want of anyone waiting).
    schedule_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    schedule_base: Mapped[int] = mapped_column(BigInteger, default=0)
    slots_used: Mapped[int] = mapped_column(BigInteger, default=0)
    # Admissions so far; the last one's admission_seq.
    admitted: Mapped[int] = mapped_column(BigInteger, default=0)

    @property
    def drawn(self) -> bool:
        return self.drawn_at is not None

    def slots_due(self, now: datetime) -> int:
        if self.schedule_from is None:
            return self.schedule_base
        elapsed = max(0.0, (now - self.schedule_from).total_seconds())
        return self.schedule_base + math.floor(self.admit_per_minute * elapsed / 60)

    def admissions_due(self, now: datetime) -> int:
        """How many to admit now: the slots come due and not yet spent, at most CATCH_UP_S worth."""
        owed = self.slots_due(now) - self.slots_used
        return max(0, min(owed, max(1, math.ceil(self.admit_per_minute * CATCH_UP_S / 60))))

    def spend(self, admitted: int, *, owed: int, now: datetime) -> None:
        """admitted of the owed slots went to customers; if fewer waited, the rest is forfeit."""
        self.admitted += admitted
        self.slots_used = self.slots_due(now) if admitted < owed else self.slots_used + admitted

    def forfeit(self, now: datetime) -> None:
        """Nothing is admitted now (the show sold out, say): the slots due are gone, not saved up."""
        self.slots_used = self.slots_due(now)

    def start(self, now: datetime) -> None:
        self.schedule_from, self.schedule_base, self.slots_used = now, 0, 0

    def change_rate(self, admit_per_minute: int, now: datetime) -> None:
        """A new rate from now on; the slots already due stay due."""
        if self.schedule_from is not None:
            self.schedule_base, self.schedule_from = self.slots_due(now), now
        self.admit_per_minute = admit_per_minute


class QueueEntry(db.Model):
    """One customer's place in one show's waiting room."""
    __tablename__ = "queue_entries"
    __table_args__ = (
        UniqueConstraint("show_id", "customer_id", name="uq_queue_entries_one_per_customer"),
        UniqueConstraint("show_id", "admission_seq", name="uq_queue_entries_admitted_once"),
        CheckConstraint("state IN ('WAITING', 'ADMITTED', 'LEFT')", name="state_known"),
        CheckConstraint("state <> 'ADMITTED' OR admission_seq IS NOT NULL", name="admitted_has_seq"),
        # The admission job's next customers, in queue order.
        Index("ix_queue_entries_waiting", "show_id", "draw_rank", "arrival_seq",
              postgresql_where=text("state = 'WAITING'")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    show_id: Mapped[str] = mapped_column(ForeignKey("waiting_rooms.show_id"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    arrival_seq: Mapped[int] = mapped_column(BigInteger, ARRIVALS, server_default=ARRIVALS.next_value())
    early: Mapped[bool] = mapped_column(Boolean, default=False)
    draw_rank: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=QUEUE.initial)
    admission_seq: Mapped[int | None] = mapped_column(BigInteger)
    admitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    admitted_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    left_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def score(self) -> int | None:
        return order_score(self.draw_rank, self.arrival_seq, early=self.early)

    def leave(self, now: datetime) -> None:
        target = QUEUE.target("leave", self.state)
        if target != self.state:
            self.state, self.left_at = target, now

    def state_at(self, now: datetime) -> QueueState:
        return shown_state(self.state, self.admitted_until, now)


def order_score(draw_rank: int | None, arrival_seq: int, *, early: bool) -> int | None:
    """The entry's place in the queue order as one number; None for an early joiner before the draw."""
    if draw_rank is not None:
        return draw_rank
    return None if early else LATE + arrival_seq


def shown_state(state: str, admitted_until: datetime | None, now: datetime) -> QueueState:
    if state == QueueState.ADMITTED and admitted_until is not None and admitted_until <= now:
        return QueueState.EXPIRED
    return QueueState(state)


def draw_order(seed: str, entry_ids: list[str]) -> list[str]:
    """The early joiners in a uniformly random order, the same for the same seed: sorted by
    HMAC-SHA256(seed, id), a pseudorandom function of the id under a secret random key. Anyone
    holding the seed and the ids can recompute the order (the audit)."""
    key = bytes.fromhex(seed)
    return sorted(entry_ids, key=lambda entry_id: hmac.new(key, entry_id.encode(), hashlib.sha256).digest())


def get_room(show_id: str, *, lock: str | None = None) -> WaitingRoom:
    """The show's waiting room; lock: None, "update" (the draw: no join may commit meanwhile, see
    services/queue_joins.py) or "no key update" (admissions, rate changes, index rebuilds)."""
    options = {"update": {}, "no key update": {"key_share": True}}
    room = db.session.get(WaitingRoom, show_id, with_for_update=options[lock] if lock else None,
                          populate_existing=lock is not None)
    if room is None:
        raise NotFound("this show has no waiting room")
    return room


(_WAITING,) = QUEUE.sources("admit")  # the one state admission starts from, named in the partial index
_ADMIT = text(f"""
    WITH next AS (
        SELECT id, row_number() OVER (ORDER BY draw_rank NULLS LAST, arrival_seq) AS n
        FROM (SELECT id, draw_rank, arrival_seq FROM queue_entries
              WHERE show_id = :show_id AND state = '{_WAITING}'
              ORDER BY draw_rank NULLS LAST, arrival_seq LIMIT :limit) AS head
    )
    UPDATE queue_entries AS entry
    SET state = :admitted, admission_seq = :after + next.n, admitted_at = :now, admitted_until = :until
    FROM next WHERE entry.id = next.id
    RETURNING entry.id, entry.admitted_until
""")


def admit_next(room: WaitingRoom, count: int, now: datetime) -> list[tuple[str, datetime]]:
    """Admit the next `count` waiting entries in queue order (the room's row is locked); returns
    (entry id, admitted until) of each."""
    if count <= 0:
        return []
    until = now + timedelta(minutes=room.session_minutes)
    rows = db.session.execute(_ADMIT, {
        "show_id": room.show_id, "admitted": QUEUE.target("admit", "WAITING"),
        "limit": count, "after": room.admitted, "now": now, "until": until}).all()
    return [(row.id, row.admitted_until) for row in rows]


_RANK = text("""
    UPDATE queue_entries AS entry SET draw_rank = drawn.rank
    FROM unnest(CAST(:ids AS varchar[])) WITH ORDINALITY AS drawn(id, rank)
    WHERE entry.id = drawn.id AND entry.show_id = :show_id
""")


def rank_early_joiners(room: WaitingRoom, seed: str) -> list[str]:
    """Draw the early joiners' order (the room's row is locked FOR UPDATE); returns their ids in it."""
    ids = list(db.session.scalars(db.select(QueueEntry.id).where(
        QueueEntry.show_id == room.show_id, QueueEntry.early.is_(True))))
    order = draw_order(seed, ids)
    if order:
        db.session.execute(_RANK, {"ids": order, "show_id": room.show_id})
    return order
