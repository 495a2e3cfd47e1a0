"""mypage.project: bring bookings' my page entries up to date with the source of truth (services/mypage.py)."""
from celery import shared_task

from services import mypage
from tasks.policy import RETRY_POLICY


@shared_task(name="mypage.project", booking_arg="batch", **RETRY_POLICY)
def project(booking_ids: list[str]) -> int:
    return mypage.project(booking_ids)
