"""Scenario NFR 3: when ticket issuance is overloaded, new charges pause and refunds are deferred.

Overloaded means either
- the `tickets` queue backlog (the messages waiting in the broker's queue: Redis LLEN, or what
  RabbitMQ answers, at most a second old) is at or over OVERLOAD_TICKETS_BACKLOG, or
- the failure rate of ticket steps over the last OVERLOAD_WINDOW_S seconds is at or over
  OVERLOAD_TICKETS_FAILURE_RATE (with at least OVERLOAD_MIN_SAMPLES outcomes in the window).

While overloaded, `payments.charge` and `payments.refund` raise `PaymentsDeferred` before they
change anything: a transient error, so they retry later with backoff, and the booking stays as
it is (CONFIRMED / CANCELLING on the my page: still in progress). They resume by themselves
once the backlog drains. Nothing is dropped: the step is still in the broker, its booking row
is still in the database, and the re-drive beat job sends it again if the broker loses it.

If Redis or the broker cannot be asked, we do not pause (see gateway/breaker.py for why failing open is right).
Ticket steps report their outcomes from the workers that run them (tasks/overload.py).
"""
from __future__ import annotations

import logging
import time

import redis
from flask import current_app

import celeryconfig
from services.errors import StepNotReady
from shared_state.broker_queues import CachedDepth
from shared_state.redis_clients import FAST_TIMEOUT_S, redis_client

log = logging.getLogger(__name__)

TICKETS_QUEUE = "tickets"
_COUNTER = "boxoffice:overload:tickets:{outcome}:{bucket}"
# On RabbitMQ the backlog costs a broker round trip of its own: asked once a second per process.
_TICKETS_DEPTH = CachedDepth(TICKETS_QUEUE)


class PaymentsDeferred(StepNotReady):
    """Ticket issuance is overloaded: the payment step waits and retries later."""


def _redis(url: str) -> redis.Redis:
    return redis_client(url, FAST_TIMEOUT_S)


def _buckets(window_s: int, now: float | None = None) -> list[int]:
    bucket = int(now or time.time()) // window_s
    return [bucket, bucket - 1]


def record_ticket_outcome(ok: bool, *, url: str, window_s: int) -> None:
    key = _COUNTER.format(outcome="ok" if ok else "fail", bucket=_buckets(window_s)[0])
    try:
        pipe = _redis(url).pipeline()
        pipe.incr(key)
        pipe.expire(key, window_s * 3)
        pipe.execute()
    except redis.RedisError:
        pass  # a statistic, not a record: losing one outcome is harmless


def measure(config) -> dict:
    """The current load of ticket issuance, and whether it is over the thresholds."""
    url, window = config["REDIS_URL"], int(config["OVERLOAD_WINDOW_S"])
    on_redis = not celeryconfig.BROKER_IS_RABBITMQ
    try:
        pipe = _redis(url).pipeline()
        if on_redis:  # the broker is this Redis: the backlog comes in the same round trip
            pipe.llen(TICKETS_QUEUE)
        for bucket in _buckets(window):
            pipe.get(_COUNTER.format(outcome="ok", bucket=bucket))
            pipe.get(_COUNTER.format(outcome="fail", bucket=bucket))
        counts = pipe.execute()
        backlog = counts.pop(0) if on_redis else _TICKETS_DEPTH.read(current_app.extensions["celery"])
    except Exception as error:  # Redis's or the broker's error: unknown load, no pause
        return {"backlog": None, "failure_rate": None, "overloaded": False, "reason": f"unknown: {error!r}"}
    ok1, fail1, ok2, fail2 = counts
    ok = int(ok1 or 0) + int(ok2 or 0)
    failed = int(fail1 or 0) + int(fail2 or 0)
    rate = failed / (ok + failed) if ok + failed else 0.0
    reasons = []
    if backlog >= config["OVERLOAD_TICKETS_BACKLOG"]:
        reasons.append(f"tickets backlog {backlog} >= {config['OVERLOAD_TICKETS_BACKLOG']}")
    if ok + failed >= config["OVERLOAD_MIN_SAMPLES"] and rate >= config["OVERLOAD_TICKETS_FAILURE_RATE"]:
        reasons.append(f"tickets failure rate {rate:.2f} >= {config['OVERLOAD_TICKETS_FAILURE_RATE']}")
    return {"backlog": backlog, "failure_rate": round(rate, 3), "samples": ok + failed,
            "overloaded": bool(reasons), "reason": "; ".join(reasons)}


def defer_if_overloaded(step: str) -> None:
    """Raise PaymentsDeferred when ticket issuance is overloaded (call before changing anything)."""
    state = measure(current_app.config)
    if state["overloaded"]:
        log.warning("%s deferred: %s", step, state["reason"])
        raise PaymentsDeferred(f"{step} deferred: ticket issuance overloaded ({state['reason']})")
