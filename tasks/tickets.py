"""tickets.make_issuable: a captured payment makes the booking's ticket issuable (services/tickets.py)."""
from celery import shared_task

from services import tickets
from tasks.policy import RETRY_POLICY


@shared_task(name="tickets.make_issuable", booking_arg="batch", **RETRY_POLICY)
def make_issuable(booking_ids: list[str]) -> str:
    return tickets.make_issuable(booking_ids)
