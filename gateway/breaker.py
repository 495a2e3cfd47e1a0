"""The payment gateway's circuit breaker, one state shared by every worker process (pybreaker
with its Redis storage).

When the gateway keeps failing, the breaker opens for everyone at once; while it is open,
charges and refunds do not call the gateway: they raise `GatewayPaused`, a GatewayUnavailable
(the outcome of a call not made is known, but the step treats it alike: it retries later with
backoff). After `BREAKER_RESET_S` one trial call is let through (half-open).

Redis down (RELIABILITY row 13): pybreaker then reports its fallback state. We choose CLOSED on
purpose: the breaker only sheds load, it protects no invariant (idempotency keys and row states
do that), and a worker that cannot reach Redis cannot be handed new steps anyway, so the steps
already running should finish against the gateway rather than be deferred into a broker that
cannot take their retry. The Redis client has short timeouts so a dead Redis never hangs a step.
"""
from __future__ import annotations

import logging
import os
import threading

import pybreaker
import redis
from flask import current_app

from gateway.client import GatewayRejected, GatewayUnavailable
from shared_state.redis_clients import FAST_TIMEOUT_S, redis_client

log = logging.getLogger(__name__)

NAMESPACE = "boxoffice:gateway"


class GatewayPaused(GatewayUnavailable):
    """The gateway's breaker is open: the step waits and retries later, nothing fails."""


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def state_change(self, cb, old_state, new_state):
        log.warning("payment gateway breaker: %s -> %s", getattr(old_state, "name", old_state), new_state.name)


_lock = threading.Lock()
_breakers: dict[tuple, pybreaker.CircuitBreaker] = {}


def make_breaker(redis_url: str, *, fail_max: int, reset_timeout: float,
                 namespace: str = NAMESPACE) -> pybreaker.CircuitBreaker:
    client = redis_client(redis_url, FAST_TIMEOUT_S)
    try:
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=namespace,
                                                fallback_circuit_state=pybreaker.STATE_CLOSED)
    except redis.RedisError as error:
        # Redis is down right now: build the storage without its initial writes; every read
        # falls back to CLOSED until Redis answers again, then the shared state takes over.
        log.warning("breaker storage unavailable (%r): failing open (CLOSED)", error)
        storage = _LazyRedisStorage(client, namespace)
    return pybreaker.CircuitBreaker(
        fail_max=fail_max, reset_timeout=reset_timeout, state_storage=storage,
        exclude=[GatewayRejected],  # a refusal is an answer, not a sign of a failing gateway
        listeners=[_LogTransitions()], name="payment-gateway",
    )


class _LazyRedisStorage(pybreaker.CircuitRedisStorage):
    """CircuitRedisStorage that skips the initial SETNX (Redis was down at start)."""

    def __init__(self, client, namespace):
        pybreaker.CircuitBreakerStorage.__init__(self, "redis")
        self._redis = client
        self._namespace_name = namespace
        self._fallback_circuit_state = pybreaker.STATE_CLOSED
        self._initial_state = pybreaker.STATE_CLOSED
        self._cluster_mode = False


def gateway_breaker() -> pybreaker.CircuitBreaker:
    """This process's handle on the shared breaker (one per process and settings)."""
    config = current_app.config
    key = (os.getpid(), config["BREAKER_REDIS_URL"], config["BREAKER_FAIL_MAX"], config["BREAKER_RESET_S"])
    with _lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = _breakers[key] = make_breaker(
                config["BREAKER_REDIS_URL"], fail_max=config["BREAKER_FAIL_MAX"],
                reset_timeout=config["BREAKER_RESET_S"])
        return breaker


def through_breaker(function, *args, **kwargs):
    """Run gateway calls under the shared breaker: failures count, and while it is open the step
    raises GatewayPaused (transient: it retries later with backoff, nothing fails)."""
    try:
        return gateway_breaker().call(function, *args, **kwargs)
    except pybreaker.CircuitBreakerError as error:
        raise GatewayPaused(f"payment gateway breaker open: {error}") from error
