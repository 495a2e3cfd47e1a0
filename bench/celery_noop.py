"""Baseline (a): a no-op Celery task on the stack's own Celery app, broker and settings.

`celery -A bench.celery_noop.celery worker -Q bench ...` runs it with the booking worker's
command line (only the app module and the queue differ). Each run of the task counts itself in
Redis, so the harness knows when all have run without a result backend (the stack has none).
"""
import os

import redis

from wsgi import celery

QUEUE = "bench"
_redis = None


@celery.task(name="bench.noop", ignore_result=True)
def noop(counter_key: str) -> None:
    global _redis
    if _redis is None:  # one connection per pool process, made after the fork
        _redis = redis.Redis.from_url(os.environ["REDIS_URL"])
    _redis.incr(counter_key)
