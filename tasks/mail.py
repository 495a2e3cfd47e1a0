"""mail.send: the mail of one event to its customer (services/mail.py), on the `mail` queue and its
own workers; mail.dispatch_due: the beat sweep that hands over the mails that are due (retries
while the SMTP server was down, lost messages). As for webhooks, the retry schedule is in the
database, not in Celery countdowns.
"""
from __future__ import annotations

from celery import shared_task

from services import mail
from tasks.policy import retry_policy


@shared_task(name="mail.send", booking_arg=False, count_starts=False, **retry_policy("mail.send"))
def send(event_id: str) -> str:
    return mail.send(event_id)


@shared_task(name="mail.dispatch_due", booking_arg=False, count_starts=False, autoretry_for=(), max_retries=0)
def dispatch_due() -> int:
    """No retries: the next sweep is seconds away."""
    return mail.dispatch_due()
