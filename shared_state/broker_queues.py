"""How many messages wait in the broker's queues, on either broker (celeryconfig.BROKER_IS_RABBITMQ).

Redis keeps a queue as lists (one per priority step) and the delivered-but-unacked messages in one
hash; RabbitMQ answers a passive queue declare with the queue's ready messages and its consumers
(what it holds unacked is only in its management API, which this does not need). Both are asked
over connections kept for the process (Redis: shared_state/redis_clients.py; RabbitMQ: the Celery
app's broker pool): nothing here opens a connection per call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from celery import Celery

from shared_state.redis_clients import redis_client


@dataclass(frozen=True)
class QueueDepths:
    ready: dict[str, int]  # queue -> messages waiting for a consumer
    unacked: int | None  # delivered and not yet acked, all queues (Redis only)


def redis_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue in: one per priority step."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel
    return [f"{queue}{Channel.sep}{step}" if step else queue for step in PRIORITY_STEPS]


def _redis_depths(celery: Celery, queues: tuple[str, ...]) -> QueueDepths:
    from kombu.transport.redis import Channel
    with redis_client(celery.conf.broker_url, 2).pipeline(transaction=False) as pipe:
        for queue in queues:
            for name in redis_lists(queue):
                pipe.llen(name)
        pipe.hlen(Channel.unacked_key)
        counts = pipe.execute()
    per_queue = len(redis_lists(""))
    ready = {queue: sum(counts[i * per_queue:(i + 1) * per_queue]) for i, queue in enumerate(queues)}
    return QueueDepths(ready, counts[-1])


def _rabbitmq_depths(celery: Celery, queues: tuple[str, ...]) -> QueueDepths:
    ready = {}
    with celery.pool.acquire(block=True, timeout=2) as connection:
        for queue in queues:
            channel = connection.channel()
            try:
                # Passive: never creates the queue (the workers declare it, with its arguments).
                ready[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors:
                ready[queue] = 0  # not declared yet: no worker has started, nothing was published
            finally:
                try:
                    channel.close()
                except connection.connection_errors + connection.channel_errors:
                    pass
    return QueueDepths(ready, None)


def queue_depths(celery: Celery, queues: tuple[str, ...]) -> QueueDepths:
    """The depth of each queue now. Raises the broker's connection errors."""
    import celeryconfig
    if celeryconfig.BROKER_IS_RABBITMQ:
        return _rabbitmq_depths(celery, queues)
    return _redis_depths(celery, queues)


class CachedDepth:
    """One queue's depth, asked of the broker at most once every `max_age_s` per process: the
    payment steps read the tickets backlog on every charge (services/overload.py)."""

    def __init__(self, queue: str, max_age_s: float = 1.0):
        self.queue, self.max_age_s = queue, max_age_s
        self._value: int | None = None
        self._at = float("-inf")

    def read(self, celery: Celery) -> int:
        now = time.monotonic()
        if self._value is None or now - self._at >= self.max_age_s:
            self._value = queue_depths(celery, (self.queue,)).ready[self.queue]
            self._at = now
        return self._value
