"""Events on their way out (SPEC §12): what a unit of work's commit writes beside its changes.

The moves of a transaction note their events (models/events.py); just before the unit of work
commits, `write_announced` writes the events, their webhook deliveries (models/webhooks.py) and
their customer mails (models/mail.py), all in that transaction. After the commit the deliveries
and mails are handed to their own queues (tasks/webhooks.py, tasks/mail.py); a hand-over that is
lost (broker down, process killed) is made up by the beat sweeps, which read the same rows.
"""
from __future__ import annotations

from typing import NamedTuple

from flask import current_app

from models.events import write_noted_events
from models.mail import record_mails
from models.webhooks import fan_out


class Announced(NamedTuple):
    """What a commit has to hand over: webhook deliveries (ids) and mails (event ids)."""
    deliveries: list[int]
    mails: list[str]

    def __bool__(self) -> bool:
        return bool(self.deliveries or self.mails)


def write_announced(session) -> Announced:
    """Write the events noted in this transaction, their deliveries and their mails."""
    events = write_noted_events(session)
    if not events:
        return Announced([], [])
    ids = [event.id for event in events]
    config = current_app.config
    return Announced(fan_out(ids, config["WEBHOOK_RETRY_FOR_S"]), record_mails(ids, config["MAIL_RETRY_FOR_S"]))
