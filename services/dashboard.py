"""The on-sale dashboard's figures (GET /admin/dashboard/data), from read models and measurements
only: a refresh never scans the booking or queue tables.

Per show that has not started (the SHOWS_SHOWN soonest):
- seats sold, held, blocked and remaining per category: reserved seating from the seat states read
  model (show_seat_states, one byte per seat, counted once per version); general admission from
  the show's own counters;
- the queue: the waiting customers from the waiting room's Redis index, the admissions so far from
  the room's row and its rate;
- rates over the last minutes, from SAMPLES: at most one sample a second (whichever refresh comes
  first takes it, across all API processes) of each show's taken seats and admissions and of the
  highest booking arrival number (max(seq): one step down its unique index). Bookings per second is
  the growth of that number (every accepted booking takes one; a few numbers may be skipped by a
  repeated Idempotency-Key), overall; per show the rate is seats taken per second.

Charges pending (CONFIRMED bookings: seats held, charge not settled) and failed (PAYMENT_FAILED),
and the consistency report's counts are the gauges beat measures into Redis (services/gauges.py),
with their age; they are counted overall, as /metrics serves them.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter

import redis
from flask import current_app
from sqlalchemy import func, select

from models import db
from models.bookings import Booking
from models.database import utc_now
from models.seats import STATUS_NAMES, load_seat_map, seat_states
from models.shows import Show
from models.waiting_room import WaitingRoom
from services import gauges
from shared_state.queue_index import QueueIndex
from shared_state.redis_clients import redis_client

log = logging.getLogger(__name__)

SHOWS_SHOWN = 12
SAMPLES_KEY = "boxoffice:dashboard:samples"
SAMPLE_LOCK_KEY = "boxoffice:dashboard:sampled"
SAMPLE_EVERY_S = 1.0
SAMPLES_KEPT = 600            # ten minutes at one a second
WINDOW_S = 300                # the rates cover the last five minutes
REDIS_TIMEOUT_S = 0.5

_category_counts: dict[tuple[str, int], dict] = {}  # (show id, version) -> counts per category


def overview() -> dict:
    now = utc_now()
    shows = db.session.execute(
        select(Show).where(Show.starts_at > now).order_by(Show.starts_at, Show.id).limit(SHOWS_SHOWN)).scalars().all()
    ids = [show.id for show in shows]
    rooms = {room.show_id: room for room in db.session.execute(
        select(WaitingRoom).where(WaitingRoom.show_id.in_(ids))).scalars()} if ids else {}
    last_seq = db.session.scalar(select(func.max(Booking.seq))) or 0
    client = _redis()
    waiting = _waiting(rooms)
    taken = {show.id: show.capacity - show.remaining for show in shows}
    admitted = {show_id: room.admitted for show_id, room in rooms.items()}
    samples = _sample(client, {"t": time.time(), "seq": last_seq,
                               "shows": {show_id: [taken[show_id], admitted.get(show_id, 0)] for show_id in ids}})
    measured = _gauges(client)
    return {
        "generated_at": now.isoformat(),
        "bookings_per_second": _rates(samples, lambda sample: sample.get("seq")),
        "charges": {"pending": _gauge(measured, "bookings:CONFIRMED"),
                    "failed": _gauge(measured, "bookings:PAYMENT_FAILED")},
        "consistency": _consistency(measured),
        "shows": [_show(show, rooms.get(show.id), waiting.get(show.id), samples) for show in shows],
    }


def _show(show: Show, room: WaitingRoom | None, waiting: int | None, samples: list[dict]) -> dict:
    def of_show(index):
        return lambda sample: (sample["shows"].get(show.id) or [None, None])[index]
    seats = {"capacity": show.capacity, "remaining": show.remaining,
             "categories": _categories(show)}
    queue = None
    if room is not None:
        queue = {"waiting": waiting, "admitted_total": room.admitted, "admit_per_minute": room.admit_per_minute,
                 "admissions_per_second": _rates(samples, of_show(1))}
    return {"id": show.id, "title": show.title, "venue": show.venue, "starts_at": show.starts_at.isoformat(),
            "on_sale_at": show.on_sale_at.isoformat() if show.on_sale_at else None, "seating": show.seating,
            "cancelled": show.cancelled_at is not None, "seats": seats,
            "seats_taken_per_second": _rates(samples, of_show(0)), "queue": queue}


def _categories(show: Show) -> list[dict]:
    """Reserved: available, held, sold and blocked per category, from the states' bytes (counted
    once per version). General admission: one line, with held and sold together as taken."""
    if not show.reserved:
        return [{"name": "General", "capacity": show.capacity, "remaining": show.remaining,
                 "taken": show.capacity - show.remaining}]
    version, states = seat_states(show.id)
    key = (show.id, version)
    counted = _category_counts.get(key)
    if counted is None:
        seat_map = load_seat_map(show.seat_map_id)
        counts = Counter(zip((seat.category for seat in seat_map.seats), states))
        counted = [{"name": category.name, "capacity": category.seats,
                    **{STATUS_NAMES[state].lower(): counts.get((category.name, state), 0) for state in range(4)}}
                   for category in seat_map.categories]
        for entry in counted:
            entry["remaining"] = entry["available"]
        if len(_category_counts) > 64:
            _category_counts.clear()
        _category_counts[key] = counted
    return counted


def _redis() -> redis.Redis:
    return redis_client(current_app.config["REDIS_URL"], REDIS_TIMEOUT_S)


def _waiting(rooms: dict) -> dict[str, int | None]:
    if not rooms:
        return {}
    config = current_app.config
    index = QueueIndex(redis_client(config.get("QUEUE_REDIS_URL") or config["REDIS_URL"], REDIS_TIMEOUT_S))
    waiting = {}
    for show_id in rooms:
        try:
            waiting[show_id] = index.waiting(show_id)
        except redis.RedisError as error:
            log.warning("queue index unreachable for the dashboard: %r", error)
            waiting[show_id] = None
    return waiting


def _sample(client: redis.Redis, sample: dict) -> list[dict]:
    """Record this sample if none was taken in the last SAMPLE_EVERY_S; the samples of the last
    WINDOW_S, oldest first. Without Redis: this sample alone (no rates)."""
    try:
        if client.set(SAMPLE_LOCK_KEY, 1, nx=True, px=int(SAMPLE_EVERY_S * 1000)):
            pipe = client.pipeline(transaction=True)
            pipe.lpush(SAMPLES_KEY, json.dumps(sample))
            pipe.ltrim(SAMPLES_KEY, 0, SAMPLES_KEPT - 1)
            pipe.execute()
        raw = client.lrange(SAMPLES_KEY, 0, int(WINDOW_S / SAMPLE_EVERY_S))
    except redis.RedisError as error:
        log.warning("dashboard samples unavailable: %r", error)
        return [sample]
    samples = [json.loads(item) for item in reversed(raw)]
    return [each for each in samples if each["t"] >= sample["t"] - WINDOW_S]


def _rates(samples: list[dict], value) -> list[list[float]]:
    """[[unix time, per second since the previous sample], ...] where both samples have a value."""
    points = []
    for earlier, later in zip(samples, samples[1:]):
        before, after = value(earlier), value(later)
        elapsed = later["t"] - earlier["t"]
        if before is None or after is None or elapsed <= 0:
            continue
        points.append([round(later["t"], 3), round(max(0, after - before) / elapsed, 3)])
    return points


def _gauges(client: redis.Redis) -> dict | None:
    try:
        return gauges.load(client)
    except redis.RedisError as error:
        log.warning("measured gauges unavailable for the dashboard: %r", error)
        return None


def _gauge(measured: dict | None, key: str) -> int | None:
    return None if measured is None else int(measured.get(key, 0))


def _consistency(measured: dict | None) -> dict:
    if measured is None:
        return {"measured_at": None, "age_s": None, "violations": None}
    return {"measured_at": measured["measured_at"], "age_s": round(max(0.0, time.time() - measured["measured_at"]), 1),
            "violations": {key.split(":", 1)[1]: int(value) for key, value in sorted(measured.items())
                           if key.startswith("violations:")}}
