"""The one place Redis clients are made (the broker's own connections and Flask-Limiter's
storage, each built by its library from a URL, excepted).

Each caller asks for its URL and its timeout profile: the breaker and the overload counters sit in
the path of every payment step and must fail fast (0.5 s), the others may wait a little longer.
A client, with its connection pool, is made once per process, URL and timeouts and shared by the
threads of that process. A process forked from one that already had clients gets clients of its
own: a pool's sockets must never be shared by two processes, so the cache is keyed by pid too.
"""
import os
import threading

import redis

FAST_TIMEOUT_S = 0.5  # in the path of a payment step: fail fast, fall back
DEFAULT_TIMEOUT_S = 2.0

_lock = threading.Lock()
_clients: dict[tuple[int, str, float], redis.Redis] = {}


def redis_client(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> redis.Redis:
    """This process's client for `url` whose connect and read timeouts are `timeout_s` seconds."""
    key = (os.getpid(), url, float(timeout_s))
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                                              socket_connect_timeout=timeout_s)
    return client
