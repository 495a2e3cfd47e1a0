"""Handing committed webhook deliveries and mails to their queues, after commit.

Their rows were written in the transaction that wrote their events (services/events.py), with
the time they were handed over (`queued_at`). If the broker is down, nothing is lost: the beat
sweeps (webhooks.dispatch_due, mail.dispatch_due) send every due row whose message never came.
A message sent twice is harmless: each attempt first claims its row.
"""
import logging

from flask import current_app

from observability import current_request_id
from tasks.publishing import CONFIRM

log = logging.getLogger(__name__)


def hand_over(announced) -> None:
    celery = current_app.extensions["celery"]
    headers = {"request_id": current_request_id()}
    try:
        with celery.producer_or_acquire() as producer:
            for delivery_id in announced.deliveries:
                celery.send_task("webhooks.deliver", args=[delivery_id], headers=headers, producer=producer,
                                 **CONFIRM)
            for event_id in announced.mails:
                celery.send_task("mail.send", args=[event_id], headers=headers, producer=producer, **CONFIRM)
    except Exception as error:  # broker down: the sweeps send them once they are due again
        log.warning("broker unavailable, %d delivery(ies) and %d mail(s) left to the sweeps: %r",
                    len(announced.deliveries), len(announced.mails), error)
