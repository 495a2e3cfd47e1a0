"""webhooks.deliver: one attempt of one webhook delivery (services/webhooks.py), on the `webhooks`
queue and its own workers, so a slow receiver never delays a booking step; webhooks.dispatch_due:
the beat sweep that hands over the deliveries that are due (retries, lost messages).

A delivery's retries are not Celery retries: its schedule is in the database (models/webhooks.py),
so a receiver that is down costs no worker slot while it waits, and no countdown outlives the
broker's visibility timeout. Celery retries only what failed on our side (the database).
"""
from __future__ import annotations

import requests
from celery import shared_task

from services import webhooks
from tasks.policy import retry_policy

_http: requests.Session | None = None


def _session() -> requests.Session:
    """One HTTP session (connection pool) per worker process, made after the fork."""
    global _http
    if _http is None:
        _http = requests.Session()
    return _http


@shared_task(name="webhooks.deliver", booking_arg=False, count_starts=False, **retry_policy("webhooks.deliver"))
def deliver(delivery_id: int) -> str:
    return webhooks.deliver(delivery_id, _session())


@shared_task(name="webhooks.dispatch_due", booking_arg=False, count_starts=False, autoretry_for=(), max_retries=0)
def dispatch_due() -> int:
    """No retries: the next sweep is seconds away."""
    return webhooks.dispatch_due()
