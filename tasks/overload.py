"""Ticket steps report their outcomes, in the worker that runs them, to the failure rate that
services/overload.py measures (scenario NFR 3)."""
from celery.signals import task_failure, task_retry, task_success
from flask import current_app

import celeryconfig

from services.overload import TICKETS_QUEUE, record_ticket_outcome


def _is_ticket_step(sender) -> bool:
    return getattr(sender, "name", "").startswith(f"{TICKETS_QUEUE}.")


def _config():
    try:
        return current_app.config
    except RuntimeError:
        return None


def _outcome(sender, ok: bool) -> None:
    if not _is_ticket_step(sender):
        return
    # The shared state's Redis, whichever the broker is (signals may come outside an app context).
    config = _config() or {}
    url = config.get("REDIS_URL") or celeryconfig.REDIS_URL
    window = int(config.get("OVERLOAD_WINDOW_S", 60))
    if url:
        record_ticket_outcome(ok, url=url, window_s=window)


@task_success.connect(weak=False)
def _ticket_success(sender=None, **_):
    _outcome(sender, True)


@task_failure.connect(weak=False)
def _ticket_failure(sender=None, **_):
    _outcome(sender, False)


@task_retry.connect(weak=False)
def _ticket_retry(sender=None, **_):
    _outcome(sender, False)
