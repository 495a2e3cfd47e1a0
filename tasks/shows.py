"""shows.cancel: the fan-out of a cancelled show (services/show_cancel.py). Each run cancels a
share of the show's live bookings and records their refund steps, and the next run if more are
left; the re-drive job asks again for any show a lost run left unfinished."""
from celery import shared_task

from services import show_cancel
from tasks.policy import retry_policy


@shared_task(name="shows.cancel", booking_arg=False, **retry_policy("shows.cancel", max_retries=16))
def cancel(show_ids: list[str]) -> str:
    return show_cancel.cancel_bookings(show_ids)
