"""Asking for seats.reserve: a show's pending bookings decided soon, at most once per interval.

A booking, once committed, only notes its show here (reserve_soon); a background thread then
sends one seats.reserve per show and interval (send_reserve), and only when none is already
queued (a Redis key the task clears as it starts). An ask lost here (broker down, process killed)
is made good by the relay (maintenance.relay_outbox), which asks for every show with bookings
pending for longer than a few seconds.
"""
import logging
import os
import threading
import time

from flask import Flask, current_app

from shared_state.redis_clients import redis_client
from tasks.background import ProcessThread
from tasks.publishing import send

log = logging.getLogger(__name__)

ASKED_KEY = "boxoffice:reserve-asked:{show_id}"
ASKED_KEY_TTL_MS = 10_000


def reserve_soon(show_id: str, app: Flask) -> None:
    """Ask for the show's pending bookings to be decided, soon after this (committed) booking.

    The request thread only notes the show; a background thread sends at most one seats.reserve
    per show and interval, and only when none is already queued (a Redis key the task clears as
    it starts). A rush of bookings for one show thus costs a few reservation tasks a second, each
    deciding every booking committed before it started, instead of a broker round trip in every
    request and a task per booking.
    """
    _asks.request(show_id, app)


def send_reserve(show_id: str, *, force: bool = False) -> bool:
    """Publish seats.reserve for a show unless one is already queued. Returns whether it did."""
    if not force:
        redis_client = _asked_redis()
        if not redis_client.set(ASKED_KEY.format(show_id=show_id), 1, nx=True, px=ASKED_KEY_TTL_MS):
            return False
    send("seats.reserve", [show_id])
    return True


def clear_reserve_asked(show_id: str) -> None:
    """Called by seats.reserve as it starts: a booking committed from now on asks again."""
    try:
        _asked_redis().delete(ASKED_KEY.format(show_id=show_id))
    except Exception as error:  # the key expires on its own; the relay asks for pending bookings
        log.warning("could not clear the reservation ask of show %s: %r", show_id, error)


def _asked_redis():
    return redis_client(current_app.config["REDIS_URL"], 2)


class ReservationAsks:
    """Collects shows that need a reservation run and asks for each once per interval, off the
    request threads. An ask lost here (broker down, process killed) is made good by the relay,
    which asks for every show with bookings pending for longer than a few seconds."""

    # Longer means bigger reservation batches (less work per booking), and a booking waits that
    # much longer for its seats; docs/benchmarks.md has the measured trade-off.
    INTERVAL_S = float(os.environ.get("RESERVE_KICK_INTERVAL_S", "0.1"))

    def __init__(self):
        self._shows: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._app = None
        self._thread = ProcessThread(self._run, "reserve-asks")

    def request(self, show_id: str, app: Flask) -> None:
        with self._lock:
            self._shows.add(show_id)
            self._app = app
        self._thread.ensure_started()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.INTERVAL_S)  # let the bookings of this moment gather
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            shows, self._shows = self._shows, set()
            app = self._app
        for show_id in shows:
            try:
                with app.app_context():
                    send_reserve(show_id)
            except Exception as error:
                log.warning("could not ask for the reservation of show %s (the relay will): %r", show_id, error)


_asks = ReservationAsks()
