"""Reservation kicks: ask for a show's pending bookings to be decided, at most once per interval.

A booking, once committed, only notes its show here; a background thread then sends one
seats.reserve_show per show and interval, and only when none is already queued (a Redis key the
task clears as it starts). A kick lost here (broker down, process killed) is made good by the
relay (maintenance.relay_outbox), which kicks every show with bookings pending for longer than a
few seconds.
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

KICK_KEY = "boxoffice:reserve-kick:{show_id}"
KICK_KEY_TTL_MS = 10_000


def request_reservation(show_id: str) -> None:
    """Ask for the show's pending bookings to be decided, soon after this (committed) booking.

    The request thread only notes the show; a background thread sends at most one
    seats.reserve_show per show and interval, and only when none is already queued (a Redis key
    the task clears as it starts). A rush of bookings for one show thus costs a few reservation
    tasks a second, each deciding every booking committed before it started, instead of a
    broker round trip in every request and a task per booking.
    """
    _kicks.request(show_id, current_app._get_current_object())


def kick_reservation(show_id: str, *, force: bool = False) -> bool:
    """Publish seats.reserve_show for a show unless one is already queued. Returns whether it did."""
    if not force:
        redis_client = _kick_redis()
        if not redis_client.set(KICK_KEY.format(show_id=show_id), 1, nx=True, px=KICK_KEY_TTL_MS):
            return False
    send("seats.reserve_show", [show_id])
    return True


def clear_kick(show_id: str) -> None:
    """Called by seats.reserve_show as it starts: a booking committed from now on kicks again."""
    try:
        _kick_redis().delete(KICK_KEY.format(show_id=show_id))
    except Exception as error:  # the key expires on its own; the relay kicks pending bookings
        log.warning("could not clear the reservation kick of show %s: %r", show_id, error)


def _kick_redis():
    return redis_client(current_app.config["REDIS_URL"], 2)


class ReservationKicks:
    """Collects shows that need a reservation run and kicks each once per interval, off the
    request threads. A kick lost here (broker down, process killed) is made good by the relay,
    which kicks every show with bookings pending for longer than a few seconds."""

    # Longer means bigger reservation batches (less work per booking), and a booking waits that
    # much longer for its seats; docs/benchmarks.md has the measured trade-off.
    INTERVAL_S = float(os.environ.get("RESERVE_KICK_INTERVAL_S", "0.1"))

    def __init__(self):
        self._shows: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._app = None
        self._thread = ProcessThread(self._run, "reserve-kicks")

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
                    kick_reservation(show_id)
            except Exception as error:
                log.warning("could not ask for the reservation of show %s (the relay will): %r", show_id, error)


_kicks = ReservationKicks()
