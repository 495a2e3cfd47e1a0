"""seats.reserve: decide a show's pending bookings, in arrival order, in batches (services/reservation.py)."""
from celery import shared_task

from services import reservation
from tasks.policy import RETRY_POLICY
from tasks.reservation_kicks import clear_reserve_asked


@shared_task(name="seats.reserve", booking_arg=False, **RETRY_POLICY)
def reserve(show_id: str) -> str:
    clear_reserve_asked(show_id)  # from here on, a newly committed booking asks for another run
    return reservation.reserve(show_id)
